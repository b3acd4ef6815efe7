//! The command tree (clap) and its dispatch: each subcommand runs the
//! function of the same name in `cmd`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

/// agent-gateway: one control plane for agent and worker fleets.
#[derive(Debug, Parser)]
#[command(name = "agent-gateway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (migrates the store on start; SIGTERM/SIGINT stop it gracefully).
    Serve {
        /// Config file (default: $AGW_CONFIG, else ./agent-gateway.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage tenant API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage OAuth clients (neuron hosts enrolled with the device flow).
    #[command(name = "oauth-clients")]
    OauthClients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Bearer JWTs for neuron and governance clients.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Neuron host enrollment (OAuth device grant).
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Execution event tools.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Governance policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Re-check every stored event chain and signature; exit 1 on the first
    /// break, naming the chain, position, event and what broke.
    Verify {
        /// Config file (for the database URL).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a config file's [governance] section (what a hot reload would
    /// accept); prints the policy label, or every error with exit status 1.
    Check {
        /// Config file (default: $AGW_CONFIG, else ./agent-gateway.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Approve (or deny) a pending enrollment by the user code it printed.
    Approve {
        /// The user code, e.g. BCDF-GHJK.
        user_code: String,
        /// The tenant the enrolled host acts for.
        #[arg(long)]
        tenant: String,
        /// Deny instead of approving.
        #[arg(long)]
        deny: bool,
        /// Config file (for the database URL).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a bearer JWT the gateway accepts (HS256 with the gateway's secret).
    Mint {
        /// Subject: the neuron, user or client id.
        #[arg(long)]
        sub: String,
        /// Tenant the token acts for (an API key owner name).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Lifetime: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Config file (for the secret or the database that stores it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a tenant API key and print it (shown once; only its hash is stored).
    Create {
        /// The tenant the key belongs to.
        #[arg(long)]
        owner: String,
        /// Config file (for the database URL).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List keys (id, owner, role, created, last used, revoked; never the secret).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        owner: Option<String>,
        /// Config file (for the database URL).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke a key by id: every replica refuses it (401) within 2 s.
    Revoke {
        /// The key id (`key_…`, from `keys list`).
        key_id: String,
        /// Config file (for the database URL).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// List OAuth clients (id, tenant, name, created, revoked).
    List {
        /// Only this tenant's clients.
        #[arg(long)]
        tenant: Option<String>,
        /// Config file (for the database URL).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke an OAuth client: no new tokens, and its tokens are refused.
    Revoke {
        /// The client id (`cid_…`).
        client_id: String,
        /// Config file (for the database URL).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Parses the command line, runs the command, and maps errors to exit code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => cmd::serve::serve(config).await,
            Command::Keys {
                command: KeysCommand::Create { owner, config },
            } => cmd::keys::create(config, &owner).await,
            Command::Keys {
                command: KeysCommand::List { owner, config },
            } => cmd::keys::list(config, owner.as_deref()).await,
            Command::Keys {
                command: KeysCommand::Revoke { key_id, config },
            } => cmd::keys::revoke(config, &key_id).await,
            Command::OauthClients {
                command: ClientsCommand::List { tenant, config },
            } => cmd::oauth_clients::list(config, tenant.as_deref()).await,
            Command::OauthClients {
                command: ClientsCommand::Revoke { client_id, config },
            } => cmd::oauth_clients::revoke(config, &client_id).await,
            Command::Token {
                command:
                    TokenCommand::Mint {
                        sub,
                        tenant,
                        ttl,
                        config,
                    },
            } => cmd::token::mint(config, &sub, &tenant, &ttl).await,
            Command::Device {
                command:
                    DeviceCommand::Approve {
                        user_code,
                        tenant,
                        deny,
                        config,
                    },
            } => cmd::device::approve(config, &user_code, &tenant, deny).await,
            Command::Events {
                command: EventsCommand::Verify { config },
            } => cmd::events::verify(config).await,
            Command::Policy {
                command: PolicyCommand::Check { config },
            } => cmd::policy::check(config),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
