//! ImageLocality: prefers nodes that already have the pod's images, weighing
//! each image's size by how widely it is spread over the cluster (so one
//! node holding a rare image does not attract every pod).

use std::sync::Arc;

use crate::framework::{
    CycleState, Handle, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo, PreScorePlugin,
    ScorePlugin, Snapshot, Status, score_each,
};

/// The plugin's name.
pub const NAME: &str = "ImageLocality";
const PRE_SCORE_STATE_KEY: &str = "PreScoreImageLocality";
const MB: i64 = 1024 * 1024;
/// Below this total the score is 0 (upstream's `minThreshold`).
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this the score is 100 (`maxContainerThreshold`).
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Scores image presence.
#[derive(Debug, Default)]
pub struct ImageLocality;

/// Per cycle: the names under which each container's image may be listed,
/// and the number of nodes in the cluster.
#[derive(Debug, Clone)]
struct PreScoreState {
    images: Vec<Vec<String>>,
    total_num_nodes: usize,
}

/// The factory (no args).
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(ImageLocality))
}

/// `name` with `:latest` when it has no tag or digest (upstream's
/// `normalizedImageName`).
pub fn tagged_image_name(name: &str) -> String {
    let last_colon = name.rfind(':');
    let last_slash = name.rfind('/');
    if name.contains('@') || last_colon > last_slash {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// The fully qualified reference a runtime reports: `nginx` is
/// `docker.io/library/nginx:latest`, `user/app:1` is
/// `docker.io/user/app:1`; references with a registry host are kept.
pub fn canonical_image_name(name: &str) -> String {
    let tagged = tagged_image_name(name);
    let (first, rest) = match tagged.split_once('/') {
        None => return format!("docker.io/library/{tagged}"),
        Some(parts) => parts,
    };
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    if !is_host {
        return format!("docker.io/{tagged}");
    }
    if (first == "docker.io" || first == "index.docker.io") && !rest.contains('/') {
        return format!("docker.io/library/{rest}");
    }
    if first == "index.docker.io" {
        return format!("docker.io/{rest}");
    }
    tagged
}

fn image_candidates(image: &str) -> Vec<String> {
    let mut names = vec![tagged_image_name(image)];
    let canonical = canonical_image_name(image);
    if !names.contains(&canonical) {
        names.push(canonical);
    }
    names
}

fn pod_images(pod: &PodInfo) -> Vec<Vec<String>> {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| image_candidates(c.image.as_deref().unwrap_or("")))
        .collect()
}

/// The sum over containers of image size × spread, for images on `node`.
fn sum_image_scores(node: &NodeInfo, images: &[Vec<String>], total_num_nodes: usize) -> i64 {
    images
        .iter()
        .filter_map(|names| names.iter().find_map(|n| node.image_states.get(n)))
        .map(|state| {
            let spread = state.num_nodes as f64 / total_num_nodes.max(1) as f64;
            (state.size as f64 * spread) as i64
        })
        .sum()
}

/// Maps the summed size onto [0, 100] between the thresholds.
fn calculate_priority(sum_scores: i64, num_containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * num_containers as i64;
    if max_threshold <= MIN_THRESHOLD {
        return 0;
    }
    let clamped = sum_scores.clamp(MIN_THRESHOLD, max_threshold);
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                images: pod_images(pod),
                total_num_nodes: snapshot.nodes.len(),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        match read_state(state) {
            Ok(s) => (s.score(node), Status::success()),
            Err(status) => (0, status),
        }
    }

    fn score_nodes<'n>(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        nodes: &'n [Arc<NodeInfo>],
        scores: &mut Vec<NodeScore<'n>>,
    ) -> Status {
        let s = match read_state(state) {
            Ok(s) => s,
            Err(status) => return status,
        };
        score_each(nodes, scores, |node| s.score(node));
        Status::success()
    }
}

/// What PreScore kept; without it the cluster size is unknown.
fn read_state(state: &CycleState) -> Result<&PreScoreState, Status> {
    state
        .read::<PreScoreState>(PRE_SCORE_STATE_KEY)
        .ok_or_else(|| {
            Status::error(format!(
                "reading {PRE_SCORE_STATE_KEY:?} from cycleState: not found"
            ))
        })
}

impl PreScoreState {
    /// One node's score.
    fn score(&self, node: &NodeInfo) -> i64 {
        let sum = sum_image_scores(node, &self.images, self.total_num_nodes);
        calculate_priority(sum, self.images.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::framework::node_info::ImageStateSummary;
    use crate::plugins::testing::{handle, node, pod, run_score, snapshot};
    use serde_json::json;

    fn with_images(name: &str, images: &[(&str, i64, usize)]) -> NodeInfo {
        let mut n = node(json!({"metadata": {"name": name}}));
        for &(image, size, num_nodes) in images {
            n.image_states
                .insert(image.to_owned(), ImageStateSummary { size, num_nodes });
        }
        n
    }

    fn pod_with(images: &[&str]) -> PodInfo {
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect();
        pod(json!({"spec": {"containers": containers}}))
    }

    #[test]
    fn names_normalise() {
        let cases = [
            ("nginx", "nginx:latest", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "nginx:1.25", "docker.io/library/nginx:1.25"),
            ("user/app", "user/app:latest", "docker.io/user/app:latest"),
            (
                "docker.io/nginx",
                "docker.io/nginx:latest",
                "docker.io/library/nginx:latest",
            ),
            (
                "localhost:5000/app",
                "localhost:5000/app:latest",
                "localhost:5000/app:latest",
            ),
            ("gcr.io/x/y:v1", "gcr.io/x/y:v1", "gcr.io/x/y:v1"),
            (
                "a@sha256:abc",
                "a@sha256:abc",
                "docker.io/library/a@sha256:abc",
            ),
        ];
        for (name, tagged, canonical) in cases {
            assert_eq!(tagged_image_name(name), tagged, "{name}");
            assert_eq!(canonical_image_name(name), canonical, "{name}");
        }
    }

    #[test]
    fn scores_from_upstream_cases() {
        let plugin = new(None, &handle()).unwrap();
        // After upstream's cases: two nodes, each image present on one of
        // them, so every image's spread is 1/2.
        let snap = snapshot(vec![
            with_images(
                "n1",
                &[
                    ("gcr.io/40:latest", 40 * MB, 1),
                    ("gcr.io/300:latest", 300 * MB, 1),
                ],
            ),
            with_images("n2", &[("gcr.io/250:latest", 250 * MB, 1)]),
        ]);
        let p = pod_with(&["gcr.io/40", "gcr.io/250"]);
        // n1: 40 MB × 1/2 = 20 MB < 23 MB → 0.
        // n2: 250 MB × 1/2 = 125 MB → 100 × (125-23)/(2000-23) = 5.
        assert_eq!(run_score(plugin.as_ref(), &p, &snap), vec![0, 5]);
        let p = pod_with(&["gcr.io/300"]);
        // n1: 150 MB of a 1000 MB max → 100 × 127/977 = 12.
        assert_eq!(run_score(plugin.as_ref(), &p, &snap), vec![12, 0]);
    }

    #[test]
    fn short_names_match_runtime_names_and_large_images_cap() {
        let plugin = new(None, &handle()).unwrap();
        let snap = snapshot(vec![
            with_images("n1", &[("docker.io/library/nginx:latest", 2000 * MB, 1)]),
            with_images("n2", &[]),
        ]);
        // 2000 MB × 1/2 = 1000 MB, the cap for one container → 100.
        assert_eq!(
            run_score(plugin.as_ref(), &pod_with(&["nginx"]), &snap),
            vec![100, 0]
        );
    }
}
