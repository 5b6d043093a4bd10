//! `skiff images ...`: manage the built-in runtime's images offline.

use std::path::PathBuf;
use std::process::ExitCode;

use skiff_runtime::{ImageStore, image_store_dir};

/// Subcommands of `skiff images`.
#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Import OCI archives or docker-archives into the built-in runtime.
    Import(ImportArgs),
}

/// Flags of `skiff images import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The node's data directory (as given to `skiff server` / `skiff agent`).
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Archives to import (`docker save`, `skopeo copy ... oci-archive:` output).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Runs `skiff images ...`.
pub fn main(command: ImagesCommand) -> ExitCode {
    match command {
        ImagesCommand::Import(args) => import(args),
    }
}

fn import(args: ImportArgs) -> ExitCode {
    let store = match ImageStore::open(&image_store_dir(&args.data_dir)) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("skiff images import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for file in &args.files {
        match store.import(file) {
            Ok(images) => {
                for image in images {
                    let names = if image.repo_tags.is_empty() {
                        "<none>".to_owned()
                    } else {
                        image.repo_tags.join(", ")
                    };
                    println!("{}\t{names}", image.id);
                }
            }
            Err(e) => {
                eprintln!("skiff images import: {}: {e}", file.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
