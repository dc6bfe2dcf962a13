//! `rkube ctr` end to end, as root: each step is a separate `rkube`
//! process over one state root, so a container started by one process is
//! seen, exec'd into, stopped and removed by others (the agent-restart
//! case). The image is built from Debian's busybox-static by the
//! project's image builder and imported as an OCI archive.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::{ImageService, RegistriesConfig, RunConfig};

struct Ctr {
    dir: tempfile::TempDir,
    image: String,
    cgroup_parent: String,
}

impl Ctr {
    fn new() -> Ctr {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("image.tar");
        ImageBuilder::new()
            .layer(LayerBuilder::busybox(Path::new("/bin/busybox")).unwrap())
            .config(RunConfig {
                cmd: Some(vec!["sh".into()]),
                env: Some(vec!["PATH=/bin".into()]),
                ..Default::default()
            })
            .build()
            .unwrap()
            .write_oci_archive("example.com/test/ctr:1", &archive)
            .unwrap();
        let images =
            ImageService::open(&dir.path().join("images"), RegistriesConfig::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let imported = rt.block_on(images.import(&archive)).unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Ctr {
            image: imported[0].name.clone(),
            cgroup_parent: format!("rkube-test/{name}"),
            dir,
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let root: PathBuf = self.dir.path().join("containers");
        Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("ctr")
            .arg("--root")
            .arg(&root)
            .arg("--images")
            .arg(self.dir.path().join("images"))
            .args([
                "--registries",
                "/nonexistent",
                "--cgroup-parent",
                &self.cgroup_parent,
            ])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "rkube ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let ps = self.ok(&["ps"]);
        for line in ps.lines().skip(1) {
            let id = line.split_whitespace().next().unwrap_or_default();
            let _ = self.cmd(&["rm", "-f", id]);
        }
        for c in ["cpu", "cpuacct", "memory", "pids"] {
            let base = Path::new("/sys/fs/cgroup").join(c);
            let _ = std::fs::remove_dir(base.join(&self.cgroup_parent));
            let _ = std::fs::remove_dir(base.join("rkube-test"));
        }
    }
}

#[test]
fn run_rm_prints_output_and_exit_code() {
    let ctr = Ctr::new();
    let out = ctr.cmd(&[
        "run",
        "--rm",
        &ctr.image,
        "--",
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(
        ctr.ok(&["ps"]).lines().count(),
        1,
        "--rm left nothing behind"
    );

    let out = ctr.cmd(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        &ctr.image,
        "--",
        "sh",
        "-c",
        "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
    ]);
    assert_eq!(out.status.code(), Some(137));
    let ps = ctr.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("Exited (137)") && l.contains("hog")),
        "{ps}"
    );
    ctr.ok(&["rm", "hog"]);

    let out = ctr.cmd(&["run", "--memory", "lots", &ctr.image]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid size"));
}

#[test]
fn detached_container_is_seen_by_other_processes() {
    let ctr = Ctr::new();
    let id = ctr.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        &ctr.image,
        "--",
        "sh",
        "-c",
        "echo started; exec sleep 600",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 16, "{id:?}");
    let ps = ctr.ok(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(line.contains("Up") && line.contains("bg"), "{line}");

    let out = ctr.cmd(&["exec", &id[..6], "sh", "-c", "echo $$ inside; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(" inside\n"));

    // The log may trail the start slightly: poll with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ctr.ok(&["logs", "bg"]) != "started\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "log never showed the output"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = ctr.cmd(&["rm", id]);
    assert!(!out.status.success(), "running containers need -f");
    ctr.ok(&["stop", "-t", "0", id]);
    assert!(ctr.ok(&["ps"]).contains("Exited (137)"));
    ctr.ok(&["rm", id]);
    assert!(!ctr.ok(&["ps"]).contains(id));
    assert!(!ctr.cmd(&["logs", id]).status.success());
}

#[path = "../../containers/tests/support/registry.rs"]
mod registry;

#[test]
fn images_pull_import_ls_export_rm_prune() {
    let ctr = Ctr::new();
    let reg = registry::Registry::start();
    let registries = ctr.dir.path().join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  \"{0}\":\n    endpoint: [\"http://{0}\"]\n",
            reg.addr
        ),
    )
    .unwrap();
    let reference = format!("{}/test/pulled:1", reg.addr);
    let config = RegistriesConfig::load(&registries).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        ImageBuilder::new()
            .layer(LayerBuilder::busybox(Path::new("/bin/busybox")).unwrap())
            .build()
            .unwrap()
            .push(
                &rkube_containers::image::client::Client::new(config),
                &reference,
            ),
    )
    .unwrap();
    let images = |args: &[&str]| {
        let mut full = vec!["--registries", registries.to_str().unwrap(), "images"];
        full.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("ctr")
            .arg("--images")
            .arg(ctr.dir.path().join("images"))
            .args(&full)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr images {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let pulled = images(&["pull", &reference]);
    assert!(
        pulled.starts_with(&format!("{reference} sha256:")),
        "{pulled}"
    );
    let listed = images(&["ls", "-q"]);
    let mut expected = [ctr.image.as_str(), reference.as_str()];
    expected.sort();
    assert_eq!(listed, format!("{}\n{}\n", expected[0], expected[1]));
    assert!(images(&["ls"]).starts_with("REF"));

    let archive = ctr.dir.path().join("out.tar");
    images(&["export", &reference, archive.to_str().unwrap()]);
    images(&["rm", &reference]);
    assert_eq!(images(&["ls", "-q"]), format!("{}\n", ctr.image));
    let imported = images(&["import", archive.to_str().unwrap()]);
    assert!(imported.starts_with(&reference), "{imported}");
    images(&["rm", &reference, &ctr.image]);
    assert_eq!(images(&["ls", "-q"]), "");
    assert!(images(&["prune"]).starts_with("removed "));
    // The re-imported image runs.
    images(&["import", archive.to_str().unwrap()]);
    let out = ctr.ok(&["run", "--rm", &reference, "--", "/bin/echo", "from-export"]);
    assert_eq!(out, "from-export\n");
}
