//! `rkube ctr images`: the node's image store, as k3s's `ctr images`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use rkube_containers::image::{DockerConfig, ImageService};

#[derive(Subcommand)]
pub enum ImagesCommand {
    /// Pull an image, verifying every blob's digest.
    Pull {
        reference: String,
        /// Registry credentials in docker config.json form (what
        /// imagePullSecrets hold).
        #[arg(long)]
        auth_file: Option<PathBuf>,
    },
    /// Import OCI image-layout or `docker save` archives.
    Import {
        #[arg(required = true)]
        archives: Vec<PathBuf>,
    },
    /// Export an image as an OCI archive.
    Export { reference: String, archive: PathBuf },
    /// List images.
    Ls {
        /// Print only the references.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (and content no other image uses).
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove content no image references.
    Prune,
}

pub async fn run(images: &ImageService, command: ImagesCommand) -> anyhow::Result<()> {
    match command {
        ImagesCommand::Pull {
            reference,
            auth_file,
        } => {
            let auth = match auth_file {
                Some(path) => {
                    let bytes =
                        std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                    Some(
                        DockerConfig::parse(&bytes)
                            .with_context(|| format!("parse {}", path.display()))?,
                    )
                }
                None => None,
            };
            let image = images.pull(&reference, auth.as_ref()).await?;
            println!("{} {}", image.name, image.digest);
        }
        ImagesCommand::Import { archives } => {
            for archive in archives {
                let imported = images
                    .import(&archive)
                    .await
                    .with_context(|| format!("import {}", archive.display()))?;
                for image in imported {
                    println!("{} {}", image.name, image.digest);
                }
            }
        }
        ImagesCommand::Export { reference, archive } => {
            images.export(&reference, &archive).await?;
        }
        ImagesCommand::Ls { quiet } => {
            let mut all = images.list()?;
            all.sort_by(|a, b| a.name.cmp(&b.name));
            if !quiet {
                println!("{:<60} {:<73} {:>10}", "REF", "DIGEST", "SIZE");
            }
            for image in all {
                if quiet {
                    println!("{}", image.name);
                } else {
                    println!(
                        "{:<60} {:<73} {:>10}",
                        image.name,
                        image.digest.to_string(),
                        human_size(image.size)
                    );
                }
            }
        }
        ImagesCommand::Rm { references } => {
            for reference in references {
                images
                    .remove(&reference)
                    .await
                    .with_context(|| format!("remove {reference}"))?;
                println!("{reference}");
            }
        }
        ImagesCommand::Prune => {
            let report = images.prune().await?;
            println!(
                "removed {} blobs and {} snapshots",
                report.blobs.len(),
                report.snapshots.len()
            );
        }
    }
    Ok(())
}

/// `12.3 MiB`, as `ctr images ls` prints sizes.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_ctr() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(5 * 1024 * 1024 + 300 * 1024), "5.3 MiB");
    }
}
