//! Real engines in the topologies production runs, on free loopback ports, killed (by pid) on
//! drop: a Redis Cluster (`redis-server --cluster-enabled yes` + `redis-cli --cluster create`),
//! a TLS Redis with `requirepass` and a certificate made with `openssl`, a Sentinel with a
//! primary and a replica, a NATS cluster with JetStream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

/// A child process killed on drop.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (scripts/test.sh installs it)"));
        Self(Some(child))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` distinct ports that were free a moment ago (held together while picked, so that no two
/// are the same).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Wait until `port` accepts TCP connections.
async fn wait_port(port: u16, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `redis-cli -p port args…`: stdout (panics when it fails).
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed (with redis-server)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn redis_args(port: u16, dir: &Path) -> Vec<String> {
    vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.to_string_lossy().into_owned(),
    ]
}

async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- Redis Cluster

pub struct RedisCluster {
    nodes: Vec<(u16, Proc)>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// `masters` primaries, each with `replicas` replicas; waits until the cluster is ok.
    pub async fn start(masters: usize, replicas: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        let count = masters * (1 + replicas);
        let ports = free_ports(count * 2);
        for i in 0..count {
            let port = ports[i];
            let d = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let mut args = redis_args(port, &d);
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &ports[count + i].to_string(),
                ]
                .map(str::to_owned),
            );
            let p = Proc::spawn(Command::new("redis-server").args(&args));
            nodes.push((port, p));
        }
        for (port, _) in &nodes {
            wait_port(*port, "redis-server (cluster node)").await;
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        let c = Self { nodes, _dir: dir };
        let ports = c.ports();
        wait_until_async(Duration::from_secs(30), "the cluster became ok", || {
            let ports = ports.clone();
            async move {
                ports.iter().all(|p| {
                    Command::new("redis-cli")
                        .args(["-p", &p.to_string(), "CLUSTER", "INFO"])
                        .output()
                        .is_ok_and(|o| {
                            String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok")
                        })
                })
            }
        })
        .await;
        if replicas > 0 {
            // Every replica has synchronised with its primary.
            let ports = c.ports();
            wait_until_async(Duration::from_secs(30), "the replicas synchronised", || {
                let ports = ports.clone();
                async move {
                    ports.iter().all(|p| {
                        let info = cli(*p, &["INFO", "replication"]);
                        !info.contains("role:slave") || info.contains("master_link_status:up")
                    })
                }
            })
            .await;
        }
        c
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(p, _)| *p).collect()
    }

    /// Seed URLs (every node).
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// A node still running.
    pub fn alive_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|(_, p)| p.0.is_some())
            .map(|(p, _)| *p)
            .expect("a node runs")
    }

    /// The port of the primary owning the slot of `key`.
    pub fn primary_of(&self, key: &str) -> u16 {
        self.try_primary_of(key).expect("a primary owns the slot")
    }

    /// The port of the primary owning the slot of `key`, if one does (not while it fails over).
    fn try_primary_of(&self, key: &str) -> Option<u16> {
        let any = self.alive_port();
        let slot: u16 = cli(any, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap();
        for line in cli(any, &["CLUSTER", "NODES"]).lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port: u16 = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap();
            for range in &f[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                    && (a..=b).contains(&slot)
                {
                    return Some(port);
                }
            }
        }
        None
    }

    /// SIGKILL the node on `port`.
    pub fn kill(&mut self, port: u16) {
        for (p, proc) in &mut self.nodes {
            if *p == port {
                proc.kill();
            }
        }
    }

    /// Wait until the nodes still running say the cluster is ok, with a primary on another port
    /// than `dead` owning the slot of `key`.
    pub async fn wait_failover(&self, key: &str, dead: u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ok = cli(self.alive_port(), &["CLUSTER", "INFO"]).contains("cluster_state:ok");
            if ok && self.try_primary_of(key).is_some_and(|p| p != dead) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no replica was promoted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------- TLS

/// A CA and a server certificate for `localhost` / `127.0.0.1`, made with `openssl`.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl is installed");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ai-gateway test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        // Readable by the servers whatever their umask made of the key.
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> String {
        self.path("ca.crt").to_string_lossy().into_owned()
    }
}

/// `redis-server` on TLS only (`--port 0 --tls-port`), with `requirepass`.
pub struct TlsRedis {
    pub port: u16,
    pub password: String,
    pub certs: Certs,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    pub async fn start(password: &str) -> Self {
        let certs = Certs::make();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut args = redis_args(0, dir.path());
        let p = |n: &str| certs.path(n).to_string_lossy().into_owned();
        args.extend([
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            p("server.crt"),
            "--tls-key-file".to_owned(),
            p("server.key"),
            "--tls-ca-cert-file".to_owned(),
            p("ca.crt"),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
            "--requirepass".to_owned(),
            password.to_owned(),
        ]);
        let proc = Proc::spawn(Command::new("redis-server").args(&args));
        wait_port(port, "redis-server (TLS)").await;
        Self {
            port,
            password: password.to_owned(),
            certs,
            _proc: proc,
            _dir: dir,
        }
    }

    /// `rediss://:password@127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("rediss://:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// `redis-cli` over TLS with the password.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "--tls",
                "--cacert",
                &self.certs.ca(),
                "-p",
                &self.port.to_string(),
            ])
            .args(["--no-auth-warning", "-a", &self.password])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

// ---------------------------------------------------------------- Sentinel

/// A primary, its replica and one sentinel monitoring them as `mymaster`.
pub struct Sentinel {
    pub primary: u16,
    pub replica: u16,
    pub sentinel: u16,
    _procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

pub const MASTER_NAME: &str = "mymaster";

impl Sentinel {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = free_ports(3);
        let (primary, replica, sentinel) = (p[0], p[1], p[2]);
        let mut procs = Vec::new();
        for (port, name) in [(primary, "p"), (replica, "r")] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            let mut args = redis_args(port, &d);
            if port == replica {
                args.extend([
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    primary.to_string(),
                ]);
            }
            procs.push(Proc::spawn(Command::new("redis-server").args(&args)));
            wait_port(port, "redis-server").await;
        }
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        procs.push(Proc::spawn(
            Command::new("redis-server").arg(&conf).arg("--sentinel"),
        ));
        wait_port(sentinel, "redis sentinel").await;
        let s = Self {
            primary,
            replica,
            sentinel,
            _procs: procs,
            _dir: dir,
        };
        // The replica is in sync and the sentinel knows it (it can fail over to it).
        wait_until_async(
            Duration::from_secs(30),
            "the sentinel saw the replica",
            || async {
                cli(s.replica, &["INFO", "replication"]).contains("master_link_status:up")
                    && cli(s.sentinel, &["SENTINEL", "REPLICAS", MASTER_NAME])
                        .contains(&s.replica.to_string())
            },
        )
        .await;
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel)
    }

    /// The primary's port as the sentinel says it.
    pub fn current_primary(&self) -> u16 {
        let out = cli(
            self.sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        out.lines()
            .nth(1)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// `SENTINEL FAILOVER` and wait until the replica is the primary.
    pub async fn failover(&self) {
        let before = self.current_primary();
        cli(self.sentinel, &["SENTINEL", "FAILOVER", MASTER_NAME]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.current_primary();
            if now != before
                && now != 0
                && cli(now, &["INFO", "replication"]).contains("role:master")
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sentinel did not fail over"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------- NATS cluster

fn nats_binary() -> PathBuf {
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("nats-server")
}

/// `n` nats-servers with JetStream, routed to each other as cluster `aigw`.
pub struct NatsCluster {
    pub ports: Vec<u16>,
    procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    pub async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = free_ports(n * 2);
        let (ports, routes) = (all[..n].to_vec(), all[n..].to_vec());
        let mut procs = Vec::new();
        for i in 0..n {
            let others: Vec<String> = (0..n)
                .filter(|j| *j != i)
                .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
                .collect();
            let sd = dir.path().join(format!("n{i}"));
            procs.push(Proc::spawn(
                Command::new(nats_binary())
                    .args(["-js", "-a", "127.0.0.1", "-p", &ports[i].to_string()])
                    .args(["-n", &format!("aigw-{i}"), "--cluster_name", "aigw"])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                    .args(["--routes", &others.join(",")])
                    .arg("-sd")
                    .arg(&sd),
            ));
        }
        for p in &ports {
            wait_port(*p, "nats-server (cluster node)").await;
        }
        Self {
            ports,
            procs,
            _dir: dir,
        }
    }

    /// Every server, comma-separated (what `state.nats_url` takes).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        self.procs[i].kill();
    }
}
