//! `tether dev`: the whole product in one process for a first try — the API on SQLite in a
//! data directory, the mock Azure backend in-process with demo resources, and a development
//! bearer token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tether_app::SecretBox;
use tether_mock_azure::{MockAzure, demo};
use tokio_util::sync::CancellationToken;

use crate::config::{
    AuditConfig, AuthConfig, AzureConfig, Config, DatabaseConfig, HousekeepingConfig, IssuerConfig,
    LogConfig, LogFormat, SagasConfig, SecretsConfig, ServerConfig, ThrottleConfig,
};
use crate::{Application, cancel_on_signal, telemetry};

/// The audience of the development token (ARM's, as the Azure SDKs ask for).
const ARM_AUDIENCE: &str = "https://management.azure.com";

/// How long the development token lasts (the mock signs with a new key at every start, so it
/// ends with the run anyway).
const DEV_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Options of `tether dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the embedded mock Azure backend.
    #[arg(long, default_value = "127.0.0.1:8081")]
    mock_listen: SocketAddr,
    /// Where the SQLite database, the secret key and the mock's resources live.
    #[arg(long, default_value = "./.tether")]
    data_dir: PathBuf,
}

/// Runs `tether dev` until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    create_private_dir(&args.data_dir).with_context(|| {
        format!(
            "could not create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let key = load_or_create_key(&args.data_dir.join("secret.key"))?;

    let mock_listener = tokio::net::TcpListener::bind(args.mock_listen)
        .await
        .with_context(|| format!("could not listen on {} (--mock-listen)", args.mock_listen))?;
    let mock_url = format!("http://{}", mock_listener.local_addr()?);
    let mut mock_config = tether_mock_azure::Config::demo();
    // The mock's resources live next to the database, so both survive a restart together.
    mock_config.state_file = Some(args.data_dir.join("mock-azure.json"));
    let mock = MockAzure::new(mock_config);
    // The mock is the token issuer too: the printed token is a JWT it signed for the demo
    // client, which Tether makes Owner of everything (its key is new at every start, so the
    // token works for this run only).
    let issuer = mock.issuer(&mock_url);
    let token = mock
        .mint_token(&mock_url, demo::CLIENT_ID, ARM_AUDIENCE, DEV_TOKEN_LIFETIME)
        .await
        .map_err(|e| anyhow::anyhow!("could not sign the development token: {e}"))?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mock = tokio::spawn(mock.serve(mock_listener, {
        let stop = shutdown.clone();
        async move { stop.cancelled().await }
    }));

    let database = args.data_dir.join("tether.db");
    let base = Config {
        server: ServerConfig {
            // Links name the host the client used, as long as it is this machine.
            trusted_hosts: vec![args.listen.ip().to_string(), "localhost".into()],
            public_scheme: "http".into(),
            location: "local".into(),
            retry_after_secs: 1,
            instance_name: "dev".into(),
            ..ServerConfig::new(args.listen)
        },
        database: DatabaseConfig::new(format!("sqlite://{}", database.display())),
        auth: AuthConfig {
            allow_http_issuers: true,
            bootstrap_owners: vec![demo::CLIENT_OBJECT_ID.into()],
            ..AuthConfig::trusting(
                vec![IssuerConfig {
                    issuer,
                    jwks_uri: None,
                    tenant_id: Some(demo::TENANT_ID.into()),
                }],
                vec![ARM_AUDIENCE.into(), format!("{ARM_AUDIENCE}/")],
            )
        },
        secrets: SecretsConfig { key },
        azure: AzureConfig {
            arm_endpoint: mock_url.clone(),
            authority: mock_url.clone(),
            tenant_id: demo::TENANT_ID.into(),
            client_id: demo::CLIENT_ID.into(),
            client_secret: SecretString::from(demo::CLIENT_SECRET.to_string()),
            max_retries: 3,
            request_timeout_secs: 30,
            sql_data_plane: Some(format!("{mock_url}/dataplane/sql")),
        },
        sagas: SagasConfig::default(),
        housekeeping: HousekeepingConfig::default(),
        throttle: ThrottleConfig::default(),
        audit: AuditConfig::default(),
        log: LogConfig {
            format: LogFormat::Text,
        },
        #[cfg(feature = "regions")]
        region: None,
    };
    let config = Config::from_base(&base)?;
    let app = Application::build(&config).await?;
    let api_url = format!("http://{}", app.local_addr());
    println!(
        "\nTether is running (development mode)\n\
         \n  API:         {api_url}\
         \n  Token:       {token}\
         \n               (a JWT for the demo client, Owner of everything; valid for this run. Another:\
         \n                POST {mock_url}/{tenant}/oauth2/v2.0/token with client_id={client}, client_secret={secret})\
         \n  Mock Azure:  {mock_url}   (admin API: {mock_url}/admin/state, /admin/calls, /admin/faults)\
         \n  Data:        {} (database, secret key, mock resources)\
         \n\nDemo resources (subscription {}):\
         \n  App Service app:          {}\
         \n  PostgreSQL flexible db:   {}\
         \n\nTry:\n  curl -H \"Authorization: Bearer {token}\" \"{api_url}/providers/Microsoft.ServiceLinker/operations?api-version=2022-05-01\"\n",
        args.data_dir.display(),
        demo::SUBSCRIPTION_ID,
        demo::WEB_APP_ID,
        demo::PG_DATABASE_ID,
        tenant = demo::TENANT_ID,
        client = demo::CLIENT_ID,
        secret = demo::CLIENT_SECRET,
    );
    let result = app.run_until_stopped(shutdown.clone()).await;
    shutdown.cancel();
    mock.await
        .context("the mock backend panicked")?
        .context("the mock backend failed")?;
    result
}

/// The data directory's AEAD key, created (readable by the owner only) on first use.
fn load_or_create_key(path: &Path) -> anyhow::Result<SecretString> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        return Ok(SecretString::from(text.trim().to_string()));
    }
    let key = SecretBox::generate_key();
    write_private(path, key.expose_secret())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(key)
}

/// Creates the data directory (with its parents) readable by its owner only: it holds the
/// secret key, the database and the mock's resources.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
