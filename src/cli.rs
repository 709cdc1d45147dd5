//! Command-line definitions. Parsing only; `commands/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use converge::agent::config::DEFAULT_PATH as AGENT_CONFIG;

/// converge: make every server provably match its role.
#[derive(Debug, Parser)]
#[command(name = "converge", version = env!("CONVERGE_VERSION"), about, max_term_width = 100)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors in the log output.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to colour output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change, with exact diffs; change nothing.
    /// Exit 0 in sync, 2 changes pending, 4 failures, 6 both, 1 could not run.
    Check(RunArgs),
    /// Converge: make exactly the changes check shows.
    /// Exit 0 in sync, 2 changes made, 4 failures, 6 both, 1 could not run.
    Apply(RunArgs),
    /// Print this host's facts.
    Facts(FactsArgs),
    /// Parse every role and render every template; report all errors. Changes nothing.
    Validate(ValidateArgs),
    /// Print the rendered files of roles. A bundle is fetched and verified (with the agent
    /// config's trusted keys) into scratch space; nothing on the host changes.
    Render(RenderArgs),
    /// Run as a long-lived agent: apply every interval, at a splay offset fixed per host.
    Agent(AgentArgs),
    /// Build a bundle from a source tree: content-addressed files and a (signed) manifest,
    /// ready for any static web server.
    Publish(PublishArgs),
    /// Roll a candidate bundle out to a share of the hosts (`publish --candidate` first):
    /// start, set the share, halt (every host back to stable), promote. Edits the signed
    /// rollout.json in the bundle dir; the source stays static.
    Rollout(RolloutArgs),
    /// Create a minisign key pair for signing bundles. The secret key is written
    /// unencrypted unless a passphrase is given: on a terminal keygen asks for one (empty:
    /// unencrypted); --passphrase-file, CONVERGE_SIGNING_PASSWORD or --encrypt give one.
    Keygen(KeygenArgs),
    /// Record this host's observable state (kernel settings, packages, units, accounts,
    /// files) as versioned JSON. Changes nothing.
    Snapshot(SnapshotArgs),
    /// Show what differs between two snapshots (or a snapshot and `live`), without noise.
    /// Exit 0 equal, 2 different, 1 bad input.
    Compare(CompareArgs),
    /// Write a role that makes NEW match OLD on everything that differs.
    Capture(CaptureArgs),
    /// List the apply runs that changed something, newest last, with how they ended.
    History(StateArgs),
    /// Undo a past run's changes (files, directories, links, sysctls, nftables tables,
    /// packages, services), then restart or reload what it had. Exit 0 nothing to undo, 2 undone, 4 something
    /// could not be undone (a failure, or a user, group, command or package version listed
    /// as not rolled back), 1 refused: something changed since the run (see --force).
    Rollback(RollbackArgs),
    /// Set this host up: trusted keys, agent config, the first converge, the timer.
    /// Safe to run again: what is already in place is left alone.
    /// Exit 0 set up and converging, whatever the first run did (changes, failures, a
    /// rollback, a source that was down: the timer retries), so cloud-init counts it done;
    /// 1 refused before writing anything (nothing changed); 3 stopped part way: NOT set up.
    Bootstrap(BootstrapArgs),
    /// Show this host's state: its bundle (id, date, signer, message), how fresh it is,
    /// whether it is held or paused, the last run's exit code and the next timer run.
    Status(StateArgs),
    /// Stop agent runs from changing this host for a while (maintenance); they resume by
    /// themselves when the pause ends. `converge apply --source` and `check` still run.
    Pause(PauseArgs),
    /// End a pause now.
    Resume(StateArgs),
    /// Show the fleet as Prometheus sees it: hosts by bundle (stable, candidate, other),
    /// failing runs, stale and expired sources, drift repaired in the last day, rollbacks
    /// and held bundles, and what the candidate would do on the hosts not on it yet.
    /// Changes nothing. Exit 0, 1 when Prometheus cannot be read.
    Fleet(FleetArgs),
    /// Write the man page and shell completions (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// Arguments of compare.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The first snapshot (A): a file from `converge snapshot`, or `live` for this host.
    #[arg(value_name = "A", required_unless_present = "print_ignore")]
    pub a: Option<String>,
    /// The second snapshot (B): a file, or `live`.
    #[arg(value_name = "B", required_unless_present = "print_ignore")]
    pub b: Option<String>,
    /// For `live`: observe this directory tree instead of the running system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// More noise patterns (TOML: sysctl/package/unit/user/group/file lists; with
    /// `replace_defaults = true` instead of the built-in list).
    #[arg(long, value_name = "FILE")]
    pub ignore: Option<PathBuf>,
    /// Print the built-in ignore list (as an ignore file) and exit.
    #[arg(long)]
    pub print_ignore: bool,
    /// Agent config whose `[timeouts]` hold for the commands this runs (dpkg-query,
    /// systemctl), when it exists.
    #[arg(long, value_name = "FILE", default_value = AGENT_CONFIG)]
    pub config: PathBuf,
    /// Also treat files matching this glob as secrets on both sides, `live` or a file,
    /// compared by hash only (repeatable).
    #[arg(long = "secret", value_name = "GLOB")]
    pub secrets: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Arguments of capture.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// OLD, the host to copy: a snapshot file, or `live` for this host.
    #[arg(long, value_name = "OLD")]
    pub from: String,
    /// NEW, the host to make match: a snapshot file, or `live`. Without it: what differs
    /// from the defaults that can be known (edited conffiles, unowned files, held and
    /// manually installed packages, units enabled beyond their presets, added accounts).
    #[arg(long, value_name = "NEW")]
    pub against: Option<String>,
    /// Name of the role to write (`web`, `db/pg`).
    #[arg(long, value_name = "NAME")]
    pub role: String,
    /// The role file: SRC/roles/NAME.toml (file contents go to SRC/files/NAME/).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Also remove packages and files that NEW has and OLD lacks.
    #[arg(long)]
    pub remove_extra: bool,
    /// Replace a role (and its files/NAME/) that is already there, hand edits and all.
    #[arg(long)]
    pub force: bool,
    /// Also treat files matching this glob as secrets on both sides, never copied
    /// (repeatable).
    #[arg(long = "secret", value_name = "GLOB")]
    pub secrets: Vec<String>,
    /// For `live`: also copy the text of files that are not world-readable (written 0600,
    /// marked `sensitive`; publish refuses them unless told).
    #[arg(long)]
    pub include_private: bool,
    /// For `live`: observe this directory tree instead of the running system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// More noise patterns, as for compare.
    #[arg(long, value_name = "FILE")]
    pub ignore: Option<PathBuf>,
    /// Agent config whose `[timeouts]` hold for the commands this runs (dpkg-query,
    /// systemctl), when it exists.
    #[arg(long, value_name = "FILE", default_value = AGENT_CONFIG)]
    pub config: PathBuf,
}

/// Arguments of snapshot.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Observe this directory tree instead of the running system (kernel settings still come
    /// from the running kernel: a tree has none).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Where to write the snapshot; `-` is stdout (created 0600: it holds config text).
    #[arg(long, short = 'o', value_name = "FILE|-", default_value = "-")]
    pub output: String,
    /// Record files under this path (repeatable; default /etc).
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<PathBuf>,
    /// Also treat files matching this glob as secrets, recorded by hash only (repeatable).
    #[arg(long = "secret", value_name = "GLOB")]
    pub secrets: Vec<String>,
    /// Also record the text of files that are not world-readable (keys, passwords): by
    /// default only their hash, size, mode and owner. Such a snapshot is written 0600.
    #[arg(long)]
    pub include_private: bool,
    /// Agent config whose `[timeouts]` hold for the commands this runs (dpkg-query,
    /// systemctl), when it exists.
    #[arg(long, value_name = "FILE", default_value = AGENT_CONFIG)]
    pub config: PathBuf,
}

/// Where roles come from and which apply.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A source tree (directory with roles/), a published bundle (directory or file://), or
    /// an http(s):// URL of one. Default: the agent config's source.
    #[arg(long, short = 's', value_name = "DIR|URL")]
    pub source: Option<String>,
    /// Role to apply (repeatable). Default: the agent config's roles, else nodes.toml.
    #[arg(long = "role", short = 'r', value_name = "NAME")]
    pub roles: Vec<String>,
    /// Override a variable, highest precedence (repeatable), e.g. --var worker_connections=8192.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Read facts from a JSON file instead of gathering them.
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// Agent config used when --source or --role is not given.
    #[arg(long, value_name = "FILE", default_value = AGENT_CONFIG)]
    pub config: PathBuf,
}

/// Output format of a run report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Diffs and a summary line for people.
    Human,
    /// The whole report as JSON.
    Json,
}

/// Arguments of check and apply.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Roles and their source.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Converge this directory tree instead of the running system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// State dir for bundles, the lock, run records and the run history (default: the agent
    /// config's, else /var/lib/converge). Used when the source is a bundle or comes from the
    /// config, and for the lock and notify journal of runs on the running machine. A source
    /// tree keeps a history only with this flag.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// minisign public key a bundle must be signed by (repeatable), added to the agent
    /// config's trusted_keys. Without any, a bundle is used unverified, with a warning.
    #[arg(long = "trusted-key", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
    /// apply: apply the bundle even if it was rolled back on this host before.
    #[arg(long)]
    pub force: bool,
    /// Plan from the source even when an earlier run with the same inputs left its plan in
    /// the state dir's plan cache (which this run then neither reads nor writes).
    #[arg(long)]
    pub no_plan_cache: bool,
    /// When a systemd timer started the run, first wait this host's fixed offset inside the
    /// agent config's `splay` (what converge.service does); a run started by hand runs at once.
    #[arg(long)]
    pub splay: bool,
}

/// Where the run history lives.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Agent config naming the state dir.
    #[arg(long, value_name = "FILE", default_value = AGENT_CONFIG)]
    pub config: PathBuf,
    /// State dir (default: the agent config's, else /var/lib/converge).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Arguments of fleet.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Base URL of the Prometheus that scrapes the hosts' metrics (node_exporter's
    /// textfile collector), e.g. `http://prometheus:9090`.
    #[arg(long, value_name = "URL")]
    pub prometheus: String,
    /// The label that names a host in its series.
    #[arg(long, value_name = "LABEL", default_value = "instance")]
    pub host_label: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Arguments of pause.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// How long, with a unit: `30m`, `2h`, `1d`.
    #[arg(long = "for", value_name = "DURATION", value_parser = pause_length)]
    pub length: std::time::Duration,
    /// Why, shown by status, runs and metrics' readers (one line).
    #[arg(long, value_name = "TEXT", value_parser = pause_reason)]
    pub reason: Option<String>,
    /// Where the state dir is.
    #[command(flatten)]
    pub state: StateArgs,
}

fn pause_length(text: &str) -> Result<std::time::Duration, String> {
    positive_duration(text, "30m or 2h", "a pause must last more than 0s")
}

/// A duration with a unit, more than zero: `example` shows the unit, `zero` says why not 0.
fn positive_duration(text: &str, example: &str, zero: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration with a unit, e.g. {example}"))?;
    if d.is_zero() {
        return Err(zero.into());
    }
    Ok(d)
}

fn pause_reason(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_control) {
        return Err("the reason must be one line of text".into());
    }
    Ok(text.to_owned())
}

/// Arguments of rollback.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run to undo, as `converge history` lists it (default: the newest).
    pub run: Option<String>,
    /// Only show what would be restored, with the diff of each file.
    #[arg(long)]
    pub check: bool,
    /// Also restore paths and live state changed since the run, keeping what is there now
    /// in the run's history first (without it, such changes stop the rollback and nothing
    /// changes).
    #[arg(long)]
    pub force: bool,
    /// The tree the run converged (must match the run's).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Where the history lives.
    #[command(flatten)]
    pub state: StateArgs,
}

/// Arguments of agent.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Agent config.
    #[arg(long, value_name = "FILE", default_value = AGENT_CONFIG)]
    pub config: PathBuf,
    /// Run once now, then exit with the run's exit code.
    #[arg(long)]
    pub once: bool,
    /// Stop after this many runs (default: run forever).
    #[arg(long, value_name = "N")]
    pub runs: Option<u64>,
}

/// Arguments of publish.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The source tree (roles/, templates/, files/, nodes.toml).
    pub src: PathBuf,
    /// The bundle directory to write (serve it as is).
    pub out: PathBuf,
    /// minisign secret key to sign the manifest with (password from CONVERGE_SIGNING_PASSWORD).
    /// Without it, publishing into a signed bundle is refused.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Publish files under files/ that are not world-readable too (by default refused:
    /// bundle objects are readable by anyone who can fetch the bundle).
    #[arg(long)]
    pub allow_private: bool,
    /// Publish without a signature even where the bundle is signed now (hosts that trust a
    /// key then refuse it).
    #[arg(long, conflicts_with = "key")]
    pub unsigned: bool,
    /// Render and plan against facts from this JSON file (default: this machine's).
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// Override a variable while validating (repeatable), as hosts' agent.toml [vars] would.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// What this bundle is, e.g. a change summary or `git describe`: kept in the signed
    /// manifest and shown by hosts in logs, history, status and metrics (one line, at most
    /// 200 characters).
    #[arg(long, short = 'm', value_name = "TEXT", value_parser = publish_message)]
    pub message: Option<String>,
    /// Publish a rollout's candidate (OUT/candidate/manifest.json) and leave the stable
    /// bundle (OUT/manifest.json) as it is; `converge rollout OUT start` puts it on hosts.
    #[arg(long)]
    pub candidate: bool,
    /// Hosts refuse the manifest once this long has passed since the publish (`7d`, `12h`):
    /// publish again before then. A frozen mirror cannot hold hosts on old content.
    #[arg(long, value_name = "DURATION", value_parser = validity)]
    pub expires: Option<std::time::Duration>,
}

fn validity(text: &str) -> Result<std::time::Duration, String> {
    positive_duration(text, "7d or 12h", "an expiry must be more than 0s away")
}

/// Arguments of rollout.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The published bundle dir (what `converge publish` wrote; serve it as is).
    pub out: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: RolloutCommand,
}

/// Rollout subcommands.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Put the candidate on PERCENT of the hosts (each host's bucket from its machine id
    /// and the candidate's id decides); also resumes a halted rollout.
    Start {
        /// Share of hosts on the candidate, 0 to 100 (two decimals).
        #[arg(long, value_name = "PERCENT", default_value = "0", value_parser = percent)]
        percent: converge::bundle::Percent,
        /// Signing and expiry.
        #[command(flatten)]
        sign: RolloutSign,
    },
    /// Change the share of hosts on the candidate of a running rollout.
    Set {
        /// Share of hosts on the candidate, 0 to 100 (two decimals).
        #[arg(value_name = "PERCENT", value_parser = percent)]
        percent: converge::bundle::Percent,
        /// Signing and expiry.
        #[command(flatten)]
        sign: RolloutSign,
    },
    /// Send every host back to the stable bundle at its next run (a fleet-wide rollback);
    /// `start` resumes.
    Halt {
        /// Signing and expiry.
        #[command(flatten)]
        sign: RolloutSign,
    },
    /// Make the candidate the stable bundle for every host, and end the rollout.
    Promote {
        /// Signing and expiry.
        #[command(flatten)]
        sign: RolloutSign,
    },
    /// Print the rollout state (stable, candidate, share, halted, expiry). Changes nothing.
    Show,
    /// The gate: read the fleet's metrics from Prometheus and move the candidate to the next
    /// of --steps (promote it after the last) when the hosts on it ran it without failures
    /// or rollbacks and at least --min-reported of them did; halt the rollout when more than
    /// --max-failed failed, saying why host by host. Exit 0 moved on, 3 too few hosts have
    /// run it yet (nothing changed), 4 halted, 1 could not judge (nothing changed).
    Advance {
        /// The gate's settings.
        #[command(flatten)]
        gate: AdvanceArgs,
        /// Signing and expiry.
        #[command(flatten)]
        sign: RolloutSign,
    },
}

/// Arguments of `rollout advance`.
#[derive(Debug, Args)]
pub struct AdvanceArgs {
    /// Base URL of the Prometheus that scrapes the hosts' metrics, e.g. `http://prometheus:9090`.
    #[arg(long, value_name = "URL")]
    pub prometheus: String,
    /// The shares of hosts on the candidate, step by step; after the last, promote.
    #[arg(long, value_name = "PERCENT,...", value_delimiter = ',', default_value = "5,25,50,100", value_parser = percent)]
    pub steps: Vec<converge::bundle::Percent>,
    /// Hosts that may fail on the candidate before the rollout halts.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_failed: usize,
    /// Hosts that must have run the candidate before it moves on.
    #[arg(long, value_name = "M", default_value_t = 1)]
    pub min_reported: usize,
    /// The label that names a host in its series.
    #[arg(long, value_name = "LABEL", default_value = "instance")]
    pub host_label: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// How a rollout command signs what it writes.
#[derive(Debug, Args)]
pub struct RolloutSign {
    /// minisign secret key to sign with (password from CONVERGE_SIGNING_PASSWORD).
    /// Without it, editing a signed rollout is refused.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Hosts refuse the new rollout file (and, for promote, the new stable manifest) once
    /// this long has passed (`7d`); default: as long as the file it replaces.
    #[arg(long, value_name = "DURATION", value_parser = validity)]
    pub expires: Option<std::time::Duration>,
}

fn percent(text: &str) -> Result<converge::bundle::Percent, String> {
    converge::bundle::Percent::parse(text)
}

fn publish_message(text: &str) -> Result<String, String> {
    converge::bundle::manifest::check_message(text)?;
    Ok(text.to_owned())
}

/// Arguments of bootstrap.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The published bundle to follow: https://, http://, file:// or a bundle directory.
    #[arg(long, short = 's', value_name = "URL")]
    pub source: String,
    /// Role for this host (repeatable). Default: the roles the agent config has, else
    /// nodes.toml in the bundle decides.
    #[arg(long = "role", short = 'r', value_name = "NAME")]
    pub roles: Vec<String>,
    /// Trusted public key (repeatable): a minisign .pub file, or the key's base64 line.
    /// Given, they replace the config's trusted_keys. A bundle not signed by one is refused
    /// and nothing is changed.
    #[arg(long = "key", short = 'k', value_name = "PUBKEY")]
    pub keys: Vec<String>,
    /// Host variable for the agent config's [vars] (repeatable), e.g. --var workers=8;
    /// the other vars there stay.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Set up this directory tree (an image) instead of the running system; the timer is
    /// enabled offline and starts when the image boots.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Arguments of keygen.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write converge.key (secret, 0600) and converge.pub into.
    pub dir: PathBuf,
    /// Encrypt the secret key with the passphrase on the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Encrypt the secret key: ask for its passphrase on the terminal, and fail without one.
    #[arg(long, conflicts_with = "passphrase_file")]
    pub encrypt: bool,
}

/// Arguments of facts.
#[derive(Debug, Args)]
pub struct FactsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Read os-release and /etc/hosts from this tree.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Arguments of validate.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Source tree to validate.
    #[arg(long, short = 's', value_name = "DIR", default_value = ".")]
    pub source: PathBuf,
    /// Validate only these roles (default: every role in roles/).
    #[arg(long = "role", short = 'r', value_name = "NAME")]
    pub roles: Vec<String>,
    /// Render against facts from this JSON file instead of this host's.
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// Override a variable (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Also run the roles' validate commands against this tree (an image, a fresh
    /// container's root), as a first apply there would; changes nothing in it.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Arguments of render.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Roles and their source.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Arguments of generate.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write the man pages, converge.bash, _converge (zsh) and converge.fish into.
    pub dir: PathBuf,
}
