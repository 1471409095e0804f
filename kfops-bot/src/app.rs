//! `kfops-bot serve`: the configured service, composed from the library parts.
//!
//! Order at start: the state directory and store (so a bad disk fails
//! before anything is accepted), the webhook verifier with every configured
//! secret, the Kubeflow backend, the dispatcher (which immediately resumes
//! unfinished commands from the ledger), then the listener. On SIGTERM or
//! Ctrl-C the listener stops accepting, requests in flight finish, and
//! commands in flight stay unfinished in the ledger for the next start.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Notify, watch};

use kfops_core::ScmProvider;
use kfops_kubeflow::compile::{Compiler, Sandbox};
use kfops_kubeflow::kfp::backend::KfpBackend;
use kfops_kubeflow::kfp::client::{KfpAuth, KfpClient, KfpConfig};
use kfops_scm::github::{GithubWebhooks, RepoAllowlist};
use kfops_scm::signature::SignatureVerifier;

use crate::config::{BotConfig, SandboxKind};
use crate::deploy::{DeployTargets, KserveTargets};
use crate::error::BotError;
use crate::images::ConfiguredImageBuilds;
use crate::server::{AppState, router, serve as serve_http};
use crate::store::Store;
use crate::worker::{Dispatcher, ImageBuilds, Services};

/// Write one line to the bot's log (standard error).
pub fn log(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "kfops-bot: {message}");
}

/// The Kubeflow client settings of the bot.
pub fn kubeflow_config(config: &BotConfig) -> Result<KfpConfig, BotError> {
    let k = &config.kubeflow;
    let mut kfp = KfpConfig::new(k.url.clone());
    if let Some(ui) = &k.ui_url {
        kfp = kfp.with_ui_url(ui.clone());
    }
    if let Some(ns) = &k.namespace {
        kfp = kfp.with_namespace(ns.clone());
    }
    let auth = if k.auth.none {
        KfpAuth::None
    } else if let Some(t) = &k.auth.token {
        // Files are re-read on every request (rotated tokens keep working).
        match (&t.file, &t.env) {
            (Some(f), _) => KfpAuth::TokenFile(f.clone()),
            (None, Some(v)) => KfpAuth::TokenEnv(v.clone()),
            (None, None) => KfpAuth::Token(t.read("kubeflow.auth.token")?),
        }
    } else if let Some(c) = &k.auth.cookie {
        match (&c.file, &c.env) {
            (Some(f), _) => KfpAuth::CookieFile(f.clone()),
            (None, Some(v)) => KfpAuth::CookieEnv(v.clone()),
            (None, None) => KfpAuth::Cookie(c.read("kubeflow.auth.cookie")?),
        }
    } else {
        KfpAuth::Auto
    };
    Ok(kfp.with_auth(auth))
}

/// Run the bot until `shutdown` resolves. `on_listening` is told the bound address.
pub async fn run(
    config: BotConfig,
    scm: Arc<dyn ScmProvider>,
    deployers: Option<Arc<dyn DeployTargets>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), BotError> {
    let io = |what: String| move |source| BotError::Io { what, source };
    std::fs::create_dir_all(&config.state_dir)
        .map_err(io(format!("creating the state directory {}", config.state_dir.display())))?;
    // Workdirs of a previous process are leftovers: their commands restart from the checkout.
    let work_root = config.workdir_root();
    let _ = std::fs::remove_dir_all(&work_root);
    std::fs::create_dir_all(&work_root).map_err(io(format!("creating {}", work_root.display())))?;
    let store = Arc::new(Store::open(&config.database_path())?);

    let secrets = config.webhook_secrets()?;
    let allowlist = RepoAllowlist::new(&config.repositories).map_err(BotError::Setup)?;
    let mut ignored = vec![config.bot_login()];
    ignored.extend(config.github.ignore_users.iter().cloned());
    let verifier = GithubWebhooks::new(SignatureVerifier::new(secrets), allowlist).with_bot_logins(ignored);

    let client = KfpClient::new(kubeflow_config(&config)?).map_err(|e| BotError::Setup(e.to_string()))?;
    let backend = Arc::new(KfpBackend::new(client));
    let images: Option<Arc<dyn ImageBuilds>> = match &config.image_builder {
        Some(section) => Some(Arc::new(ConfiguredImageBuilds::new(section.clone())?)),
        None => None,
    };
    let mut compiler =
        Compiler::new().scrub_env(true).timeout(std::time::Duration::from_secs(config.workers.compile_timeout_seconds));
    if let Some(python) = &config.workers.python {
        compiler = compiler.python(python.clone());
    }
    if let Some(sandbox) = sandbox(&config)? {
        sandbox.probe().await.map_err(|e| BotError::Setup(format!("`workers.sandbox`: {e}")))?;
        compiler = compiler.sandbox(sandbox);
    } else {
        log("warning: `workers.sandbox: none`: pipeline code from pull requests runs unconfined");
    }

    let work = Arc::new(Notify::new());
    let state = AppState::new(Arc::new(verifier), Arc::clone(&store), Arc::clone(&work));
    let services = Services {
        scm,
        backend,
        images,
        compiler,
        store: Arc::clone(&store),
        policy: config.policy.clone(),
        workdir_root: work_root,
        deploy: config.deploy.clone(),
        busy_services: std::sync::Mutex::default(),
        deployers,
        bot_login: config.bot_login(),
        poll_interval: config.workers.poll_interval(),
        metrics: state.metrics(),
    };
    let dispatcher = Dispatcher::new(services, config.workers.concurrency, Arc::clone(&work));
    let unfinished = store.unfinished_count()?;
    if unfinished > 0 {
        log(&format!("resuming {unfinished} unfinished command(s) from the ledger"));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let workers = tokio::spawn(Arc::clone(&dispatcher).run(stopped(stop_rx.clone())));

    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(io(format!("listening on {}", config.listen)))?;
    let addr = listener.local_addr().map_err(io("reading the bound address".into()))?;
    log(&format!("listening on {addr}"));
    on_listening(addr);
    let served = serve_http(listener, router(state, config.body_limit_bytes), async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    let _ = workers.await;
    log("stopped; unfinished commands resume at the next start");
    served.map_err(io("serving HTTP".into()))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    log("shutting down");
}

/// KServe deploy targets when `deploy:` is configured.
pub fn kserve_deployers(config: &BotConfig) -> Result<Option<Arc<dyn DeployTargets>>, BotError> {
    if config.deploy.is_none() {
        return Ok(None);
    }
    let checker = kfops_deploy::check::HttpInferenceCheck::new().map_err(|e| BotError::Setup(e.to_string()))?;
    Ok(Some(Arc::new(KserveTargets::new(Arc::new(checker)))))
}

/// The compiler sandbox from `workers:` (`None` when switched off).
pub fn sandbox(config: &BotConfig) -> Result<Option<Sandbox>, BotError> {
    if config.workers.sandbox == SandboxKind::None {
        return Ok(None);
    }
    let program = match &config.workers.bwrap {
        Some(p) => p.clone(),
        None => kfops_kubeflow::compile::find_on_path("bwrap", None).ok_or_else(|| {
            BotError::Setup(
                "`workers.sandbox` is `bubblewrap`, but `bwrap` is not on PATH: install bubblewrap \
                 (e.g. `apt install bubblewrap`), set `workers.bwrap`, or (trusted repositories only) \
                 set `workers.sandbox: none`"
                    .into(),
            )
        })?,
    };
    Ok(Some(Sandbox::bubblewrap(program)))
}

/// The GitHub provider from `github:` (secrets read now).
pub fn github_provider(config: &BotConfig) -> Result<Arc<dyn ScmProvider>, BotError> {
    use kfops_scm::github::{GithubAuth, GithubConfig, GithubProvider};
    let a = &config.github.auth;
    let auth = match (&a.token, a.app_id, &a.private_key) {
        (Some(token), _, _) => GithubAuth::Token(token.read("github.auth.token")?),
        (None, Some(app_id), Some(key)) => {
            GithubAuth::App { app_id, private_key_pem: key.read("github.auth.private_key")? }
        }
        _ => return Err(BotError::Setup("`github.auth` names neither a token nor a GitHub App".into())),
    };
    let mut github = GithubConfig::new(config.github.api_url.clone(), auth);
    github.pacing = std::time::Duration::from_millis(config.github.pacing_ms);
    let provider = GithubProvider::new(github).map_err(|e| BotError::Setup(e.to_string()))?;
    Ok(Arc::new(provider))
}
