//! The demo's SSH step: a real `sshd` on a loopback port, as the VM
//! web-01 in offline mode (it trusts contoso's CA, lists its own scopes as
//! principals for the demo's login, and refuses what contoso's KRL
//! revokes), and a real `ssh` logging in with sam's certificate. `sshd`
//! runs as whoever runs the demo, so the login is that user's own account.
//! Skipped, with a line saying why, where OpenSSH is not installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lockbox_client::Client;
use lockbox_core::ResourceId;
use lockbox_core::ssh::UnixLogin;

/// What the demo's VM answers to a login.
pub(crate) const GREETING: &str = "hello from web-01";

/// The account the demo's certificates log in as: the user running the
/// demo (`sshd` not run as root can only let its own user in), when
/// OpenSSH is installed and the name is a login Lockbox accepts.
pub(crate) fn login() -> Result<UnixLogin, String> {
    for tool in ["/usr/sbin/sshd", "ssh", "ssh-keygen"] {
        let found = if tool.starts_with('/') {
            Path::new(tool).exists()
        } else {
            Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        if !found {
            return Err(format!(
                "{tool} is not installed (apt-get install openssh-server openssh-client)"
            ));
        }
    }
    let out = Command::new("id")
        .arg("-un")
        .output()
        .map_err(|e| format!("cannot tell who runs the demo: {e}"))?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    UnixLogin::parse(&name).map_err(|e| format!("the login of this user: {e}"))
}

/// The demo VM: an `sshd` and its files, stopped and removed when dropped.
pub(crate) struct DemoVm {
    dir: PathBuf,
    sshd: Child,
    port: u16,
    login: UnixLogin,
}

impl Drop for DemoVm {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn keygen(path: &Path) -> Result<(), String> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "lockbox-demo", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("ssh-keygen failed: {status}"))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl DemoVm {
    /// Starts the VM `vm`, trusting `tenant`'s CA and KRL as `anyone` reads
    /// them, in `dir`.
    pub(crate) async fn start(
        anyone: &Client,
        tenant: &str,
        vm: &str,
        login: UnixLogin,
        dir: PathBuf,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ca = anyone
            .ssh_trusted_keys(tenant)
            .await
            .map_err(|e| e.to_string())?;
        write(&dir.join("ca.pub"), ca.as_bytes())?;
        let scopes: String = ResourceId::parse(vm)
            .map_err(|e| e.to_string())?
            .ancestors()
            .iter()
            .map(|s| format!("{}\n", s.canonical()))
            .collect();
        write(&dir.join("principals"), scopes.as_bytes())?;
        keygen(&dir.join("host"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile {d}/sshd.pid\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AuthorizedKeysFile none\nStrictModes no\nTrustedUserCAKeys {d}/ca.pub\n\
             AuthorizedPrincipalsFile {d}/principals\nRevokedKeys {d}/revoked.krl\n",
            d = dir.display()
        );
        write(&dir.join("sshd_config"), config.as_bytes())?;
        // sshd's privilege separation directory (root only; as another
        // user sshd does without).
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut vm = Self {
            sshd: Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(dir.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start sshd: {e}"))?,
            dir,
            port,
            login,
        };
        vm.fetch_krl(anyone, tenant).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", vm.port)).is_err() {
            if let Ok(Some(status)) = vm.sshd.try_wait() {
                return Err(format!("sshd stopped: {status}"));
            }
            if Instant::now() > deadline {
                return Err("sshd did not listen within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(vm)
    }

    /// Fetches the tenant's KRL into the VM's `RevokedKeys`, as a timer on
    /// a VM would (`lockbox ssh krl`).
    pub(crate) async fn fetch_krl(&mut self, anyone: &Client, tenant: &str) -> Result<(), String> {
        let (bytes, _) = anyone
            .ssh_krl(tenant, None)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("a KRL fetched without a tag came back unchanged")?;
        let tmp = self.dir.join("revoked.krl.tmp");
        write(&tmp, &bytes)?;
        std::fs::rename(&tmp, self.dir.join("revoked.krl")).map_err(|e| e.to_string())
    }

    /// A new key in the VM's directory (standing in for the operator's),
    /// certified under `grant` by `operator`: the key's path.
    pub(crate) async fn certified_key(
        &self,
        operator: &Client,
        grant: &str,
    ) -> Result<(PathBuf, u64), String> {
        let key = self.dir.join("sam");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(self.dir.join("sam.pub"));
        keygen(&key)?;
        let public =
            std::fs::read_to_string(self.dir.join("sam.pub")).map_err(|e| e.to_string())?;
        let cert = operator
            .ssh_certificate(grant, public.trim())
            .await
            .map_err(|e| e.to_string())?;
        write(
            &self.dir.join("sam-cert.pub"),
            format!("{}\n", cert.certificate).as_bytes(),
        )?;
        Ok((key, cert.serial))
    }

    /// Logs in with `key` and its certificate and runs `echo`: what the VM
    /// said, or why `ssh` failed.
    pub(crate) fn log_in(&self, key: &Path) -> Result<String, String> {
        let out = Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}-cert.pub", key.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.login))
            .arg(format!("echo {GREETING}"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// The port `sshd` listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}
