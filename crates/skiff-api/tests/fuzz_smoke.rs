//! The fuzz targets of `fuzz/` on stable: every entry point of
//! `skiff_api::fuzzing` over its seed corpus (`fuzz/corpus/<target>/`) and a
//! few thousand deterministic mutations of it. A panic fails the test and
//! prints the input that caused it, in hex, ready to be added to the corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutations per target; the corpus itself always runs in full. The
/// environment variable `FUZZ_SMOKE_MUTATIONS` overrides it for longer runs.
const MUTATIONS: usize = 3000;

fn mutations() -> usize {
    std::env::var("FUZZ_SMOKE_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MUTATIONS)
}

/// Bytes worth inserting: JSON and YAML punctuation, the part separator,
/// patch directives' first characters, quantity suffixes.
const INTERESTING: &[u8] = b"{}[]\":,-0123456789.eEmkKMGTPi \n\\$/~\xff\x00nul";

/// Fragments worth splicing in.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "\"\"",
    "{}",
    "[]",
    "-1",
    "1e309",
    "9223372036854775808",
    "\"$patch\":\"delete\"",
    "\"$patch\":\"replace\"",
    "\"$retainKeys\":[\"x\"]",
    "\"$setElementOrder/containers\":[{\"name\":\"c\"}]",
    "\"$deleteFromPrimitiveList/finalizers\":[\"a\"]",
    "{\"op\":\"add\",\"path\":\"/a/-\",\"value\":1}",
    "{\"op\":\"move\",\"from\":\"/spec\",\"path\":\"/spec/x\"}",
    "\"name\":\"c\"",
    "\"containers\":[{\"name\":\"c\",\"image\":\"i\"}]",
    "\"metadata\":{\"name\":\"n\",\"labels\":{\"a\":\"b\"}}",
    "\"cpu\":\"1500m\"",
    "\"memory\":\"1.5Gi\"",
    "\"port\":0",
    "\"managedFields\":[{\"manager\":\"m\",\"operation\":\"Apply\",\"fieldsV1\":{\"f:spec\":{}}}]",
    "\"k:{\\\"name\\\":\\\"c\\\"}\":{}",
    "\"v:1\":{}",
    "[[[[[[[[[[[[[[[[",
    "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{",
    "Ki",
    "e-9",
    "in (a,b)",
    "notin ()",
    "!=",
    "\\,",
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// One random edit of `input`, in the spirit of libFuzzer's mutators.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = input.len();
    match rng.random_range(0..8) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 => {
            let i = rng.random_range(0..=len);
            input.insert(i, INTERESTING[rng.random_range(0..INTERESTING.len())]);
        }
        3 if len > 0 => {
            let start = rng.random_range(0..len);
            let end = rng.random_range(start..=len.min(start + 16));
            input.drain(start..end);
        }
        4 => {
            let i = rng.random_range(0..=len);
            let token = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
            input.splice(i..i, token.iter().copied());
        }
        5 if len > 1 => {
            // Duplicate a slice in place (longer lists, deeper nesting).
            let start = rng.random_range(0..len);
            let end = rng.random_range(start..=len.min(start + 64));
            let chunk = input[start..end].to_vec();
            let at = rng.random_range(0..=len);
            input.splice(at..at, chunk);
        }
        6 if !seeds.is_empty() => {
            // Crossover: the tail of another seed.
            let other = &seeds[rng.random_range(0..seeds.len())];
            let cut = rng.random_range(0..=len);
            let from = rng.random_range(0..=other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        _ if len > 0 => {
            // Another kind for the same body.
            input[0] = rng.random();
        }
        _ => input.push(rng.random()),
    }
}

/// Runs `entry` over the corpus of `target`, then over [`mutations`] mutants
/// (1 to 4 edits each); the first panic fails with the input in hex.
fn run(target: &str, entry: fn(&[u8]), seed: u64) {
    let seeds = corpus(target);
    assert!(seeds.len() >= 5, "{target}: the seed corpus is too small");
    let check = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| entry(input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("{target} panicked on input (hex) {hex}");
        }
    };
    for input in &seeds {
        check(input);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..mutations() {
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut rng, &mut input, &seeds);
        }
        input.truncate(64 * 1024);
        check(&input);
    }
}

#[test]
fn decode_and_validate_survives_its_corpus_and_mutations() {
    run(
        "decode_and_validate",
        skiff_api::fuzzing::decode_and_validate,
        1,
    );
}

#[test]
fn strategic_merge_patch_survives_its_corpus_and_mutations() {
    run(
        "strategic_merge_patch",
        skiff_api::fuzzing::strategic_merge_patch,
        2,
    );
}

#[test]
fn server_side_apply_survives_its_corpus_and_mutations() {
    run(
        "server_side_apply",
        skiff_api::fuzzing::server_side_apply,
        3,
    );
}

#[test]
fn quantity_round_trips_over_its_corpus_and_mutations() {
    run("quantity", skiff_api::fuzzing::quantity, 4);
}

/// The seed corpus picks its kinds by index into the resource table (byte 0):
/// a reordered table would silently point the seeds at other kinds.
#[test]
fn seed_corpus_kind_bytes_name_the_kinds_they_were_written_for() {
    use skiff_api::resources::RESOURCES;
    let kind_of = |target: &str, file: &str| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target)
            .join(file);
        let data = std::fs::read(&path).unwrap();
        let r = &RESOURCES[usize::from(data[0]) % RESOURCES.len()];
        (r.group, r.kind)
    };
    assert_eq!(kind_of("decode_and_validate", "pod"), ("", "Pod"));
    assert_eq!(kind_of("decode_and_validate", "service"), ("", "Service"));
    assert_eq!(
        kind_of("decode_and_validate", "deployment"),
        ("apps", "Deployment")
    );
    assert_eq!(
        kind_of("decode_and_validate", "endpointslice"),
        ("discovery.k8s.io", "EndpointSlice")
    );
    assert_eq!(
        kind_of("strategic_merge_patch", "role_rules"),
        ("rbac.authorization.k8s.io", "Role")
    );
    assert_eq!(
        kind_of("server_side_apply", "deploy_conflict"),
        ("apps", "Deployment")
    );
}

/// The round trip the quantity target asserts holds for upstream's examples,
/// and a quantity that printed as something that parses differently would
/// trip it.
#[test]
fn quantity_round_trip_prints_canonical_forms() {
    use skiff_api::quantity::Quantity;
    for (input, printed) in [
        ("1.5", "1500m"),
        ("2048Ki", "2Mi"),
        ("1000m", "1"),
        ("0.5Gi", "512Mi"),
        // Binary but not a whole number of Ki: upstream prints it plain.
        ("7.81250Ki", "8000"),
    ] {
        skiff_api::fuzzing::quantity(input.as_bytes());
        let q = Quantity::parse(input).unwrap();
        assert_eq!(q.to_string(), printed, "{input}");
        assert_eq!(Quantity::parse(printed).unwrap(), q);
    }
}
