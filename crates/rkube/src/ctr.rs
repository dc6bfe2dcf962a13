//! `rkube ctr`: run and inspect containers on this node through the
//! built-in runtime, for humans and tests — in the spirit of k3s's
//! `ctr`/`crictl`. Every container gets its own sandbox (own network,
//! IPC and UTS namespaces unless `--net-host`); state lives under
//! `--root`, shared with other `rkube ctr` processes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rkube_containers::image::{ImageService, RegistriesConfig};
use rkube_containers::runtime::logs::{self, Stream};
use rkube_containers::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, ExecConfig, ExecIo, LocalRuntime,
    NetworkMode, Resources, Runtime, RuntimeOptions, SandboxConfig, UserSpec,
};

#[derive(Args)]
pub struct CtrArgs {
    /// Runtime state directory.
    #[arg(long, default_value = "/var/lib/rkube/agent/containers")]
    root: PathBuf,
    /// Image store directory.
    #[arg(long, default_value = "/var/lib/rkube/agent/images")]
    images: PathBuf,
    /// registries.yaml (mirrors, auth, TLS), k3s format; used if present.
    #[arg(long, default_value = "/etc/rkube/registries.yaml")]
    registries: PathBuf,
    /// Parent cgroup of the containers, relative to each hierarchy.
    #[arg(long, default_value = "rkube")]
    cgroup_parent: PathBuf,
    #[command(subcommand)]
    command: CtrCommand,
}

mod images;

#[derive(Subcommand)]
enum CtrCommand {
    /// Manage the node's images: pull, import, export, ls, rm, prune.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Create and start a container (pulling the image if needed).
    Run(Box<RunArgs>),
    /// List containers.
    Ps,
    /// Run a command in a running container.
    Exec {
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        id: String,
        #[arg(required = true, trailing_var_arg = true)]
        cmd: Vec<String>,
    },
    /// Print a container's log (all rotated files, oldest first).
    Logs { id: String },
    /// Stop containers: SIGTERM, then SIGKILL after the grace period.
    Stop {
        /// Grace period in seconds.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers (and their sandboxes); running ones need -f.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Print the container id and return instead of waiting.
    #[arg(short, long, conflicts_with = "rm")]
    detach: bool,
    #[arg(long)]
    name: Option<String>,
    /// Memory limit: bytes, or with k/m/g suffix.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit in cores (quota over a 100ms period; shares to match).
    #[arg(long)]
    cpus: Option<f64>,
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short, long = "env")]
    env: Vec<String>,
    #[arg(short, long)]
    workdir: Option<String>,
    /// User: uid, name, uid:gid or name:group.
    #[arg(short, long)]
    user: Option<String>,
    #[arg(long)]
    read_only: bool,
    #[arg(long)]
    privileged: bool,
    #[arg(long)]
    cap_add: Vec<String>,
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Use the host's network namespace.
    #[arg(long)]
    net_host: bool,
    #[arg(long)]
    hostname: Option<String>,
    /// Allocate a terminal for the container's output.
    #[arg(short, long)]
    tty: bool,
    image: String,
    /// Command and arguments (replace the image's ENTRYPOINT and CMD).
    #[arg(trailing_var_arg = true)]
    cmd: Vec<String>,
}

fn parse_size(s: &str) -> anyhow::Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    if n.is_nan() || n <= 0.0 {
        bail!("size {s:?} must be positive");
    }
    Ok((n * mult as f64) as i64)
}

fn load_registries(args: &CtrArgs) -> anyhow::Result<RegistriesConfig> {
    if args.registries.exists() {
        RegistriesConfig::load(&args.registries)
            .with_context(|| format!("load {}", args.registries.display()))
    } else {
        Ok(RegistriesConfig::default())
    }
}

fn open_images_with(args: &CtrArgs, registries: RegistriesConfig) -> anyhow::Result<ImageService> {
    ImageService::open(&args.images, registries)
        .with_context(|| format!("open image store {}", args.images.display()))
}

fn open_images(args: &CtrArgs) -> anyhow::Result<ImageService> {
    open_images_with(args, load_registries(args)?)
}

struct Ctx {
    rt: LocalRuntime,
    images: Arc<ImageService>,
}

impl Ctx {
    fn open(args: &CtrArgs) -> anyhow::Result<Ctx> {
        let registries = load_registries(args)?;
        let images = Arc::new(open_images_with(args, registries)?);
        let mut options = RuntimeOptions::new(&args.root);
        options.cgroup_parent = args.cgroup_parent.clone();
        let rt = LocalRuntime::new(options, images.clone()).context("open runtime")?;
        Ok(Ctx { rt, images })
    }

    /// A full id, or a unique prefix of one.
    fn find(&self, id: &str) -> anyhow::Result<String> {
        let all = self.rt.list()?;
        let hits: Vec<_> = all
            .iter()
            .filter(|c| c.id.starts_with(id) || c.name == id)
            .collect();
        match hits.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => bail!("no container {id:?}"),
            _ => bail!("{id:?} matches {} containers", hits.len()),
        }
    }

    /// Removes a container and its sandbox once no other container uses it.
    fn remove(&self, id: &str) -> anyhow::Result<()> {
        let st = self.rt.status(id)?;
        self.rt.remove(id)?;
        if !self.rt.list()?.iter().any(|c| c.sandbox == st.sandbox) {
            self.rt.remove_sandbox(&st.sandbox)?;
        }
        Ok(())
    }
}

pub async fn run(args: CtrArgs) -> anyhow::Result<()> {
    if matches!(args.command, CtrCommand::Images(_)) {
        let store = open_images(&args)?;
        let CtrCommand::Images(command) = args.command else {
            unreachable!("matched above")
        };
        return images::run(&store, command).await;
    }
    let ctx = Ctx::open(&args)?;
    match args.command {
        CtrCommand::Images(_) => unreachable!("handled above"),
        CtrCommand::Run(run) => run_container(&ctx, *run).await,
        CtrCommand::Ps => ps(&ctx),
        CtrCommand::Exec { tty, id, cmd } => {
            let id = ctx.find(&id)?;
            let io = own_stdio()?;
            let config = ExecConfig {
                cmd,
                env: Vec::new(),
                tty,
            };
            let rt = ctx.rt;
            let code = tokio::task::spawn_blocking(move || rt.exec(&id, &config, io)).await??;
            std::process::exit(code)
        }
        CtrCommand::Logs { id } => {
            let st = ctx.rt.status(&ctx.find(&id)?)?;
            print_logs(&st.log_path, &mut 0)?;
            Ok(())
        }
        CtrCommand::Stop { time, ids } => {
            for id in ids {
                let id = ctx.find(&id)?;
                ctx.rt.stop(&id, Duration::from_secs(time))?;
                println!("{id}");
            }
            Ok(())
        }
        CtrCommand::Rm { force, ids } => {
            for id in ids {
                let id = ctx.find(&id)?;
                if !force && ctx.rt.status(&id)?.state == ContainerState::Running {
                    bail!("container {id} is running; stop it or use -f");
                }
                ctx.remove(&id)?;
                println!("{id}");
            }
            Ok(())
        }
    }
}

/// Our own stdio, duplicated for the exec'd process.
fn own_stdio() -> anyhow::Result<ExecIo> {
    use std::os::fd::AsFd;
    Ok(ExecIo {
        stdin: Some(std::io::stdin().as_fd().try_clone_to_owned()?),
        stdout: std::io::stdout().as_fd().try_clone_to_owned()?,
        stderr: std::io::stderr().as_fd().try_clone_to_owned()?,
    })
}

async fn run_container(ctx: &Ctx, args: RunArgs) -> anyhow::Result<()> {
    let image = match ctx.images.get(&args.image) {
        Ok(img) => img.name,
        Err(_) => ctx.images.pull(&args.image, None).await?.name,
    };
    let name = args.name.clone().unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("ctr-{:x}", t.as_micros() & 0xffff_ffff)
    });
    let mut env = Vec::new();
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .with_context(|| format!("--env {e:?} is not KEY=VALUE"))?;
        env.push((k.to_string(), v.to_string()));
    }
    let resources = Resources {
        cpu_shares: args.cpus.map(|c| (c * 1024.0).max(2.0) as u64),
        cpu_quota: args.cpus.map(|c| (c * 100_000.0).max(1000.0) as i64),
        cpu_period: args.cpus.map(|_| 100_000),
        memory_limit: args.memory.as_deref().map(parse_size).transpose()?,
        pids_limit: args.pids_limit,
    };
    let config = ContainerConfig {
        name: name.clone(),
        image,
        command: args.cmd.clone(),
        env,
        working_dir: args.workdir.clone(),
        user: UserSpec {
            user: args.user.clone(),
            ..Default::default()
        },
        capabilities: rkube_containers::runtime::Capabilities {
            add: args.cap_add.clone(),
            drop: args.cap_drop.clone(),
        },
        privileged: args.privileged,
        read_only_rootfs: args.read_only,
        resources,
        log_max_size: 10 << 20,
        log_max_files: 5,
        tty: args.tty,
        ..Default::default()
    };
    let sandbox = ctx.rt.create_sandbox(&SandboxConfig {
        name: name.clone(),
        namespace: "default".into(),
        hostname: args.hostname.clone().unwrap_or_else(|| name.clone()),
        network: if args.net_host {
            NetworkMode::Host
        } else {
            NetworkMode::Pod
        },
        ..Default::default()
    })?;
    let id = match ctx.rt.create_container(&sandbox, &config) {
        Ok(id) => id,
        Err(e) => {
            let _ = ctx.rt.remove_sandbox(&sandbox);
            return Err(e.into());
        }
    };
    if let Err(e) = ctx.rt.start(&id) {
        if args.rm {
            let _ = ctx.remove(&id);
        }
        return Err(e.into());
    }
    if args.detach {
        println!("{id}");
        return Ok(());
    }
    // Follow the log while waiting, so output appears as it is written.
    let mut offset = 0u64;
    let status = loop {
        let st = ctx.rt.wait(&id, Some(Duration::from_millis(100)))?;
        let log = ctx.rt.status(&id)?.log_path;
        print_new(&log, &mut offset)?;
        if st.state == ContainerState::Exited {
            break st;
        }
    };
    if args.rm {
        ctx.remove(&id)?;
    }
    let code = status.exit_code.unwrap_or(255);
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Prints records from `offset` on (complete lines only).
fn print_new(path: &Path, offset: &mut u64) -> anyhow::Result<()> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(format!("read {}", path.display())),
    };
    // Rotation makes the live file shorter than what we have read.
    if (data.len() as u64) < *offset {
        *offset = 0;
    }
    let new = &data[*offset as usize..];
    let end = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    write_records(&String::from_utf8_lossy(&new[..end]))?;
    *offset += end as u64;
    Ok(())
}

fn print_logs(path: &Path, offset: &mut u64) -> anyhow::Result<()> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = f
                .strip_prefix(&format!("{}.", name.to_string_lossy()))
                .and_then(|n| n.parse().ok())
            {
                rotated.push((n, e.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, p) in rotated {
        write_records(&std::fs::read_to_string(&p).unwrap_or_default())?;
    }
    print_new(path, offset)
}

fn write_records(text: &str) -> anyhow::Result<()> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for line in text.lines() {
        let Some(r) = logs::parse(line) else { continue };
        let w: &mut dyn Write = if r.stream == Stream::Stdout {
            &mut out
        } else {
            &mut err
        };
        w.write_all(r.content.as_bytes())?;
        if !r.partial {
            w.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn ps(ctx: &Ctx) -> anyhow::Result<()> {
    println!(
        "{:<16}  {:<14}  {:<8}  {:<20}  IMAGE",
        "CONTAINER", "STATUS", "PID", "NAME"
    );
    for c in ctx.rt.list()? {
        println!(
            "{:<16}  {:<14}  {:<8}  {:<20}  {}",
            c.id,
            describe(&c),
            c.pid.map_or("-".to_string(), |p| p.to_string()),
            c.name,
            c.image
        );
    }
    Ok(())
}

fn describe(c: &ContainerStatus) -> String {
    let ago = |t: Option<SystemTime>| {
        t.and_then(|t| t.elapsed().ok())
            .map_or(String::new(), |d| format!(" {}s", d.as_secs()))
    };
    match c.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => format!("Up{}", ago(c.started_at)),
        ContainerState::Exited => format!("Exited ({})", c.exit_code.unwrap_or(-1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512Ki").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
    }
}
