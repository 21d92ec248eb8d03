//! An embedded PostgreSQL server run from the machine's own binaries, so `cargo run` needs
//! no setup. The cluster lives under the data dir and is reused between runs.
//!
//! Layout under the data dir:
//! - `postgres/`: the cluster (`PGDATA`), owned by the user the server runs as;
//! - `postgres.password`: the generated superuser password (mode 0600);
//! - `postgres.log`: the server's log.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::binaries::{self, PgBinaries, SearchPlan};

/// The cluster's superuser. Modules never use it: they get their own roles.
pub const SUPERUSER: &str = "bulkhead";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run the embedded server.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Bulkhead's data dir; the cluster is `<data_dir>/postgres`.
    pub data_dir: PathBuf,
    /// Use this bin directory instead of searching (`BULKHEAD_PG_BIN_DIR`).
    pub bin_dir: Option<PathBuf>,
    /// Extra server settings, passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
    /// Listen on this loopback port instead of a free one picked at each start, so clients
    /// reconnect after a restart (the chaos harness restarts the server under the app).
    pub port: Option<u16>,
}

impl EmbeddedOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), bin_dir: None, settings: Vec::new(), port: None }
    }

    /// Settings for throwaway test clusters: durability traded for speed.
    pub fn with_test_settings(mut self) -> Self {
        for (name, value) in [
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "400"),
            ("shared_buffers", "128MB"),
        ] {
            self.settings.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    fn cluster_dir(&self) -> PathBuf {
        self.data_dir.join("postgres")
    }

    fn password_file(&self) -> PathBuf {
        self.data_dir.join("postgres.password")
    }

    fn log_file(&self) -> PathBuf {
        self.data_dir.join("postgres.log")
    }
}

/// Where a running cluster can be reached.
#[derive(Debug, Clone)]
pub struct ClusterAddress {
    pub port: u16,
    pub password: SecretString,
}

impl ClusterAddress {
    /// Superuser connection options for `database`.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(self.password.expose_secret())
            .database(database)
    }
}

/// A running embedded server owned by this process; [`EmbeddedPostgres::stop`] shuts it down,
/// and dropping it without stopping asks the server to shut down all the same.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    child: Option<Child>,
    address: ClusterAddress,
    log_file: PathBuf,
    _lock: Option<DataDirLock>,
}

impl EmbeddedPostgres {
    /// Finds the binaries, initialises the cluster on first use, recovers from a crashed
    /// previous run, starts the server on a free loopback port and waits until it accepts
    /// connections.
    ///
    /// # Errors
    /// Missing binaries (with install advice), an unusable data dir, or a server that does
    /// not come up (with the tail of its log).
    pub async fn start(options: &EmbeddedOptions) -> anyhow::Result<Self> {
        let options = options.clone();
        let (cluster, lock) = blocking(move || {
            // Holding the data dir's lock for our lifetime is what tells a server left running
            // by a crashed run (an orphan we may stop) from one a live sibling is using.
            let lock = DataDirLock::try_acquire(&options.data_dir)?;
            let cluster = Cluster::prepare(&options)?;
            cluster.stop_orphan()?;
            Ok((cluster, lock))
        })
        .await?;
        Self::launch(cluster, Some(lock)).await
    }

    /// Starts the server as [`EmbeddedPostgres::start`] does, but leaves it running when this
    /// process exits: a cluster shared by several processes (the test cluster) outlives each.
    /// If the cluster is already running, its address is returned without a restart.
    ///
    /// # Errors
    /// As for [`EmbeddedPostgres::start`].
    pub async fn ensure_running_detached(options: &EmbeddedOptions) -> anyhow::Result<ClusterAddress> {
        let owned = options.clone();
        let (cluster, lock) = blocking(move || {
            let lock = DataDirLock::acquire_waiting(&owned.data_dir)?;
            Ok((Cluster::prepare(&owned)?, lock))
        })
        .await?;
        if let Some(port) = cluster.running_port {
            let address = ClusterAddress { port, password: cluster.password.clone() };
            if probe(&address).await.is_ok() {
                return Ok(address);
            }
        }
        let cluster = blocking(move || cluster.stop_orphan().map(|()| cluster)).await?;
        let mut server = Self::launch(cluster, None).await?;
        // Forget the child: it is in its own process group and keeps running after we exit.
        server.child = None;
        drop(lock);
        Ok(server.address.clone())
    }

    /// Stops a server [`EmbeddedPostgres::ensure_running_detached`] left running; returns
    /// whether one was running.
    ///
    /// # Errors
    /// An unusable data dir, or a server that does not stop.
    pub async fn stop_detached(options: &EmbeddedOptions) -> anyhow::Result<bool> {
        let owned = options.clone();
        blocking(move || {
            let _lock = DataDirLock::acquire_waiting(&owned.data_dir)?;
            let cluster = Cluster::prepare(&owned)?;
            let was_running = cluster.running_pid.is_some();
            cluster.stop_orphan()?;
            Ok(was_running)
        })
        .await
    }

    async fn launch(cluster: Cluster, lock: Option<DataDirLock>) -> anyhow::Result<Self> {
        let (cluster, child, port) = blocking(move || {
            let (child, port) = cluster.spawn_server()?;
            Ok((cluster, child, port))
        })
        .await?;
        let address = ClusterAddress { port, password: cluster.password.clone() };
        let mut server = Self { child: Some(child), address, log_file: cluster.log_file.clone(), _lock: lock };
        if let Err(error) = server.wait_until_ready().await {
            server.stop().await.ok();
            return Err(error);
        }
        tracing::info!(port, cluster = %cluster.dir.display(), "embedded PostgreSQL is ready");
        Ok(server)
    }

    pub fn address(&self) -> &ClusterAddress {
        &self.address
    }

    /// Connection options for the superuser on `database`.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        self.address.connect_options(database)
    }

    /// Fast shutdown: the server disconnects clients, checkpoints and exits.
    ///
    /// # Errors
    /// When the server cannot be signalled or does not exit in time.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || shut_down(child))
            .await
            .context("waiting for the embedded PostgreSQL to stop")??;
        tracing::info!("embedded PostgreSQL stopped");
        Ok(())
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "embedded PostgreSQL exited during start-up ({status}). Last lines of {}:\n{}",
                    self.log_file.display(),
                    log_tail(&self.log_file)
                );
            }
            match probe(&self.address).await {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    return Err(error).context(format!(
                        "embedded PostgreSQL did not accept connections within {STARTUP_TIMEOUT:?}; see {}",
                        self.log_file.display()
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        // A safety net for early returns and panics: never leave the server behind.
        if let Some(child) = &self.child {
            let _ = kill(pid_of(child), Signal::SIGINT);
        }
    }
}

/// Connects once as the superuser and runs a trivial query.
async fn probe(address: &ClusterAddress) -> anyhow::Result<()> {
    let options = address.connect_options("postgres");
    let mut connection = PgConnection::connect_with(&options).await?;
    sqlx::query("SELECT 1").execute(&mut connection).await?;
    connection.close().await.ok();
    Ok(())
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

fn shut_down(mut child: Child) -> anyhow::Result<()> {
    let pid = pid_of(&child);
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    kill(pid, Signal::SIGINT).context("signalling the embedded PostgreSQL to stop")?;
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!("embedded PostgreSQL ignored fast shutdown; sending immediate shutdown");
    kill(pid, Signal::SIGQUIT).ok();
    child.wait()?;
    Ok(())
}

/// The on-disk cluster, made ready to start.
#[derive(Debug)]
struct Cluster {
    binaries: PgBinaries,
    data_dir: PathBuf,
    dir: PathBuf,
    log_file: PathBuf,
    settings: Vec<(String, String)>,
    port: Option<u16>,
    run_as: Option<User>,
    password: SecretString,
    /// Port of a server already running on this cluster (left by a previous process).
    running_port: Option<u16>,
    running_pid: Option<Pid>,
}

impl Cluster {
    /// Finds the binaries, makes the data dir usable by the server user, initialises the
    /// cluster on first use and notes a server still running on it.
    fn prepare(options: &EmbeddedOptions) -> anyhow::Result<Self> {
        let binaries = binaries::find(&SearchPlan::for_this_machine(options.bin_dir.as_deref()))?;
        create_dir_traversable(&options.data_dir)?;
        // Absolute from here on: the server and initdb run in another working directory.
        let options = &EmbeddedOptions {
            data_dir: fs::canonicalize(&options.data_dir)
                .with_context(|| format!("resolving the data dir {}", options.data_dir.display()))?,
            ..options.clone()
        };
        let run_as = server_user()?;
        if let Some(user) = &run_as {
            make_ancestors_traversable(&options.data_dir, user)?;
        }
        let password = read_or_create_password(&options.password_file())?;
        let dir = options.cluster_dir();
        let mut cluster = Self {
            binaries,
            data_dir: options.data_dir.clone(),
            dir,
            log_file: options.log_file(),
            settings: options.settings.clone(),
            port: options.port,
            run_as,
            password,
            running_port: None,
            running_pid: None,
        };
        if cluster.dir.join("PG_VERSION").exists() {
            cluster.fix_ownership()?;
            cluster.inspect_lock_file()?;
        } else {
            cluster.initdb()?;
        }
        Ok(cluster)
    }

    fn initdb(&self) -> anyhow::Result<()> {
        if self.dir.exists() {
            // A half-made cluster from an interrupted first run: it holds nothing of value.
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing the incomplete cluster at {}", self.dir.display()))?;
        }
        fs::create_dir(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        self.chown(&self.dir)?;

        // initdb reads the password from a file the server user can read; it is removed at once.
        let pwfile = self.data_dir.join(format!(".initdb-pw-{}", std::process::id()));
        {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&pwfile)?;
            file.write_all(self.password.expose_secret().as_bytes())?;
        }
        self.chown(&pwfile)?;
        tracing::info!(cluster = %self.dir.display(), "initialising the embedded PostgreSQL cluster (first run)");
        let output = self
            .command(&self.binaries.initdb())
            .arg("--pgdata")
            .arg(&self.dir)
            .args(["--username", SUPERUSER, "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output();
        fs::remove_file(&pwfile).ok();
        let output = output.with_context(|| format!("running {}", self.binaries.initdb().display()))?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Reads `postmaster.pid`: a live server there is an orphan of a crashed run; a dead pid
    /// is a stale file, removed so the server does not trip over an unrelated process.
    fn inspect_lock_file(&mut self) -> anyhow::Result<()> {
        let pid_file = self.dir.join("postmaster.pid");
        let Ok(contents) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let mut lines = contents.lines();
        let pid = lines.next().and_then(|l| l.trim().parse::<i32>().ok());
        let port = lines.nth(2).and_then(|l| l.trim().parse::<u16>().ok());
        match pid.map(Pid::from_raw) {
            Some(pid) if is_cluster_server(pid, &self.dir) => {
                self.running_pid = Some(pid);
                self.running_port = port;
            }
            _ => {
                tracing::warn!(file = %pid_file.display(), "removing a stale postmaster.pid left by a crash");
                fs::remove_file(&pid_file).ok();
            }
        }
        Ok(())
    }

    fn stop_orphan(&self) -> anyhow::Result<()> {
        let Some(pid) = self.running_pid else {
            return Ok(());
        };
        tracing::warn!(%pid, "a previous run left its PostgreSQL running; stopping it before starting afresh");
        kill(pid, Signal::SIGINT).ok();
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while is_cluster_server(pid, &self.dir) {
            if Instant::now() > deadline {
                kill(pid, Signal::SIGQUIT).ok();
                std::thread::sleep(Duration::from_secs(1));
                if is_cluster_server(pid, &self.dir) {
                    bail!("the orphaned PostgreSQL server (pid {pid}) does not stop; stop it by hand");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn spawn_server(&self) -> anyhow::Result<(Child, u16)> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log_file)?;
        let mut last_error = None;
        // A port picked as free can be taken before the server binds it; try a few.
        for _ in 0..3 {
            let port = match self.port {
                Some(port) => port,
                None => free_loopback_port()?,
            };
            let mut command = self.command(&self.binaries.postgres());
            command
                .arg("-D")
                .arg(&self.dir)
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
                .stdout(log.try_clone()?)
                .stderr(log.try_clone()?)
                // Its own process group: a Ctrl-C in the terminal reaches the app only, which
                // drains requests first and then stops the server itself.
                .process_group(0);
            for (name, value) in &self.settings {
                command.arg("-c").arg(format!("{name}={value}"));
            }
            let mut child =
                command.spawn().with_context(|| format!("starting {}", self.binaries.postgres().display()))?;
            std::thread::sleep(Duration::from_millis(100));
            match child.try_wait()? {
                None => return Ok((child, port)),
                Some(status) => last_error = Some(anyhow!("postgres exited at once ({status})")),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("postgres did not start")))
            .with_context(|| format!("Last lines of {}:\n{}", self.log_file.display(), log_tail(&self.log_file)))
    }

    /// A command that runs as the server user when we are root (PostgreSQL refuses root).
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.data_dir).stdin(Stdio::null()).env("LC_ALL", "C");
        if let Some(user) = &self.run_as {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        command
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(user) = &self.run_as {
            std::os::unix::fs::lchown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("changing the owner of {} to {}", path.display(), user.name))?;
        }
        Ok(())
    }

    /// The cluster must belong to the user the server runs as; a data dir copied or created
    /// by someone else is handed over (as root) or refused with a clear message.
    fn fix_ownership(&self) -> anyhow::Result<()> {
        let owner = fs::metadata(&self.dir)?.uid();
        match &self.run_as {
            Some(user) if owner != user.uid.as_raw() => {
                tracing::warn!(cluster = %self.dir.display(), user = %user.name, "handing the cluster to the server user");
                chown_recursive(&self.dir, user)
            }
            None if owner != Uid::effective().as_raw() => bail!(
                "the PostgreSQL cluster at {} belongs to uid {owner}, not to you; \
                 run as that user, remove the directory, or set BULKHEAD_DATA_DIR elsewhere",
                self.dir.display()
            ),
            _ => Ok(()),
        }
    }
}

/// An exclusive lock on `<data_dir>/bulkhead.lock`, released when dropped (or when the
/// process dies, however it dies).
#[derive(Debug)]
struct DataDirLock(#[expect(dead_code, reason = "held for its lock, never read")] File);

impl DataDirLock {
    fn open(data_dir: &Path) -> anyhow::Result<File> {
        create_dir_traversable(data_dir)?;
        let path = data_dir.join("bulkhead.lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    fn try_acquire(data_dir: &Path) -> anyhow::Result<Self> {
        let file = Self::open(data_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Self(file)),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another Bulkhead process is using the data dir {}; stop it, or set BULKHEAD_DATA_DIR to another directory",
                data_dir.display()
            ),
            Err(std::fs::TryLockError::Error(error)) => Err(error).context("locking the data dir"),
        }
    }

    fn acquire_waiting(data_dir: &Path) -> anyhow::Result<Self> {
        let file = Self::open(data_dir)?;
        file.lock().context("locking the data dir")?;
        Ok(Self(file))
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work).await.context("a blocking start-up task panicked")?
}

/// As root, the server runs as `postgres` if that user exists, else `nobody`.
fn server_user() -> anyhow::Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = User::from_name(name)? {
            return Ok(Some(user));
        }
    }
    bail!("running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as")
}

fn create_dir_traversable(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating the data dir {}", dir.display()))?;
    let mut permissions = fs::metadata(dir)?.permissions();
    if permissions.mode() & 0o011 != 0o011 {
        permissions.set_mode(permissions.mode() | 0o711);
        fs::set_permissions(dir, permissions)?;
    }
    Ok(())
}

/// The server user must be able to walk down to the cluster. A checkout under `/root`
/// (mode 0700) would stop it, so as root we add the search bit (x, never read) where missing.
fn make_ancestors_traversable(dir: &Path, user: &User) -> anyhow::Result<()> {
    let absolute = fs::canonicalize(dir)?;
    for ancestor in absolute.ancestors().skip(1) {
        let metadata = fs::metadata(ancestor)?;
        let mode = metadata.mode();
        let can_search = (metadata.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (metadata.gid() == user.gid.as_raw() && mode & 0o010 != 0)
            || mode & 0o001 != 0;
        if !can_search {
            tracing::warn!(dir = %ancestor.display(), user = %user.name, "adding the search permission (o+x) so PostgreSQL can reach its data");
            fs::set_permissions(ancestor, fs::Permissions::from_mode((mode & 0o7777) | 0o001))?;
        }
    }
    Ok(())
}

fn chown_recursive(path: &Path, user: &User) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_recursive(&entry?.path(), user)?;
        }
    }
    Ok(())
}

fn read_or_create_password(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(existing) = fs::read_to_string(path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(SecretString::from(existing.to_owned()));
        }
    }
    let password = hex::encode(rand::random::<[u8; 24]>());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(password.as_bytes())?;
    Ok(SecretString::from(password))
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether `pid` is alive and the server of `cluster_dir` — not an unrelated process, nor
/// another cluster's server, that reused the pid of a crashed one.
fn is_cluster_server(pid: Pid, cluster_dir: &Path) -> bool {
    let alive = match kill(pid, None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    let ours = fs::read(format!("/proc/{pid}/cmdline")).map_or(
        // Without /proc (macOS) trust the pid.
        true,
        |cmdline| {
            let arguments: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            arguments.windows(2).any(|pair| pair[0] == b"-D" && Path::new(OsStr::from_bytes(pair[1])) == cluster_dir)
        },
    );
    alive && ours && !is_zombie(pid)
}

pub(crate) fn is_zombie(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(')').next().map(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.seek(SeekFrom::Start(length.saturating_sub(4096))).ok();
    let mut tail = String::new();
    file.read_to_string(&mut tail).ok();
    let lines: Vec<&str> = tail.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
