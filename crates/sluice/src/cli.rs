//! Command-line syntax. Only commands that work are listed here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Ship LLM changes safely: evaluate, gate, roll out, watch, roll back.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level for Sluice's own messages (RUST_LOG, when set, overrides it).
    #[arg(long, global = true, default_value = "warn", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
    /// The store: a SQLite file path.
    #[arg(long, global = true, env = "SLUICE_STORE", default_value = sluice_store::DEFAULT_PATH)]
    pub store: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the local demo: a simulated model server, sample requests with timings, a load test
    /// and an eval gate on a healthy and a regressed model, and a run recorded in the store.
    /// Needs no GPU and no network.
    Quickstart(QuickstartArgs),
    /// Serve an OpenAI-compatible model-server SIMULATOR (a test and demo tool, not a model).
    Simulate(SimulateArgs),
    /// Run an eval suite (promptfoo's YAML format) and gate on it: exit 0 when the gate
    /// passes, 1 when it fails, 2 on a configuration or provider setup error. `list`, `show`
    /// and `diff` read stored runs.
    Eval(EvalCommandArgs),
    /// Red-team an OpenAI-compatible endpoint: OWASP-tagged probe packs (injection,
    /// jailbreak, system-prompt extraction, leakage, harmful requests, excessive agency, and a
    /// benign over-refusal set) plain and through strategies, judged offline; exit 0 when the
    /// gate passes, 1 when it fails, 2 on a configuration or setup error.
    Redteam(RedteamCommandArgs),
    /// Load-test an OpenAI-compatible endpoint (open or closed loop, sweeps, presets) and
    /// gate on thresholds: exit 0 when all hold, 99 when one fails, 3 when the client could
    /// not keep its schedule (the numbers are not a server result), 2 on a usage or setup
    /// error. `compare` sets two results side by side.
    Bench(BenchCommandArgs),
    /// Serve an OpenAI-compatible gateway that splits each route's traffic between model
    /// versions (weights, sticky users, header overrides, segments) with live per-version
    /// metrics and an admin API. SIGHUP reloads the config; SIGTERM drains.
    Gateway(GatewayArgs),
    /// Roll a new version out behind `sluice gateway`: canary steps, live analysis and
    /// automatic rollback, with every transition in the store.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Send one chat request to an OpenAI-compatible endpoint and show the answer and timing.
    Chat(ChatArgs),
    /// Check every `models/<name>/model.yaml` under the paths, with the `deployment.yaml`,
    /// `config/<environment>.yaml` files and prompt templates beside it (placeholders against
    /// the vars of the suites in `evals/`): exit 0 valid, 1 invalid, 2 when a path is missing
    /// or holds no model.yaml.
    Validate(ValidateArgs),
    /// The production-readiness gate for a registered version: availability, p95 latency and
    /// error rate over a window (from the gateway's log in the store, or Prometheus) and GPU
    /// capacity (nvidia-smi or an inventory file). Exit 0 ready, 1 not ready, 2 usage.
    Readiness(ReadinessArgs),
    /// The model registry: versions with artifacts (local files hashed), tags, evidence runs
    /// and aliases with an append-only history. Exit 2 on refused input (nothing written).
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Inspect the store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Run the pipeline in `pipeline.yaml`: its stages as a DAG, independent ones in
    /// parallel, with timeouts, retries, allowed failures and `finally` stages. Exit 0 when
    /// every stage succeeded (or failed as allowed), 1 when one did not, 2 on a bad file.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Serve the control plane: a read-only JSON API over the store (runs, run diffs,
    /// rollouts and their events, pipelines, the registry) with its OpenAPI document at
    /// `/api/v1/openapi.json`. Runs until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Scaffold a repository that ships a model with Sluice: model files, prompt, eval suite,
    /// load test, gateway and canary, `pipeline.yaml` and its GitHub Actions workflow.
    Init(InitArgs),
}

/// `sluice serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    /// Loopback by default: the API shows every stored run.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
    /// The environment variable holding the admin token: with it, rollouts can be promoted,
    /// paused, resumed and aborted from the API (`Authorization: Bearer`) and the dashboard
    /// (after logging in); without it, nothing can be changed from here.
    #[arg(long, value_name = "VAR")]
    pub admin_token_env: Option<String>,
    /// Rules the control plane evaluates on its own (`monitor.yaml`): the feedback loop's
    /// retraining trigger.
    #[arg(long, value_name = "FILE")]
    pub monitor: Option<std::path::PathBuf>,
    /// An OpenAI-compatible base URL whose `/embeddings` embeds prompts for embedding drift
    /// (`/api/v1/drift?…&embeddings=true`).
    #[arg(long, value_name = "URL", requires = "embeddings_model")]
    pub embeddings_url: Option<String>,
    /// The embedding model asked of `--embeddings-url`.
    #[arg(long, value_name = "MODEL", requires = "embeddings_url")]
    pub embeddings_model: Option<String>,
    /// The environment variable holding `--embeddings-url`'s API key, if it needs one.
    #[arg(long, value_name = "VAR", requires = "embeddings_url")]
    pub embeddings_key_env: Option<String>,
}

/// `sluice init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository's directory (created when missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The model's name (lowercase letters, digits and `-`).
    #[arg(long, default_value = "chat")]
    pub name: String,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `sluice pipeline …`.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Check the pipeline, then run it.
    Run(PipelineRunArgs),
    /// Write the pipeline as another CI system's file: each job runs
    /// `sluice pipeline run --only STAGE`, so that the stages behave as they do here.
    Export(PipelineExportArgs),
}

/// `sluice pipeline export`.
#[derive(Debug, Args)]
pub struct PipelineExportArgs {
    /// The pipeline file.
    #[arg(short = 'f', long = "file", default_value = "pipeline.yaml")]
    pub file: PathBuf,
    /// The CI system.
    #[arg(long = "to")]
    pub to: sluice_pipeline::export::Target,
    /// Where to write it; standard output by default.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// `sluice pipeline run`.
#[derive(Debug, Args)]
pub struct PipelineRunArgs {
    /// The pipeline file.
    #[arg(short = 'f', long = "file", default_value = "pipeline.yaml")]
    pub file: PathBuf,
    /// Check the file and print the order stages would run in, without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Stages running at once, at most.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: u16,
    /// Where each stage's output goes (`STAGE.log`); a new directory under the system's
    /// temporary directory by default.
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,
    /// Print the report as JSON instead of a table (no progress lines).
    #[arg(long)]
    pub json: bool,
    /// Run only these stages (repeat the flag; a matrix stage's name runs all its
    /// combinations); needs on stages left out count as met.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Run this stage and every stage that needs it, directly or not.
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Run only the stages of this tier (unit, integration, quality, eval, safety,
    /// performance).
    #[arg(long, value_parser = parse_tier)]
    pub tier: Option<sluice_pipeline::Tier>,
    /// Finish the last run of this pipeline that did not pass (or was killed): the stages
    /// that ended well there are kept, the others run.
    #[arg(long)]
    pub resume: bool,
    /// Run every stage, cached or not (results are still saved to the cache).
    #[arg(long)]
    pub no_cache: bool,
    /// Where cached stages are kept; `.sluice/cache` beside the pipeline file by default.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The GPUs stages may use: an inventory file (`gpus: [{type, memory_gb, count, node,
    /// spot, hourly_price}]`); `nvidia-smi` by default.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Write a JUnit report with one test case per stage.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Do not record the run in the store.
    #[arg(long)]
    pub no_store: bool,
    /// Print each stage's output on stderr as it comes, after the stage's name (always with
    /// --only: a CI job's log); the log files get it either way.
    #[arg(long)]
    pub echo: bool,
}

fn parse_tier(text: &str) -> Result<sluice_pipeline::Tier, String> {
    sluice_pipeline::Tier::parse(text).ok_or_else(|| {
        format!("unknown tier `{text}`: expected unit, integration, quality, eval, safety or performance")
    })
}

/// `sluice quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `sluice eval [list|show|diff]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalCommandArgs {
    /// A stored-run subcommand; without one, the suite is run.
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// Running a suite.
    #[command(flatten)]
    pub run: EvalArgs,
}

/// Subcommands over stored eval runs.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// List stored eval runs, newest first.
    List(RunsListArgs),
    /// Show one stored run: its summary and failing results.
    Show(ShowArgs),
    /// Compare two stored runs test by test: what flipped, and whether the second is
    /// significantly worse.
    Diff(DiffArgs),
}

/// `sluice eval list`.
#[derive(Debug, Args)]
pub struct RunsListArgs {
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice eval show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run id.
    pub run: String,
    /// Print the run and all its results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice eval diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline run id.
    pub baseline: String,
    /// The candidate run id.
    pub candidate: String,
    /// Confidence for the significance test.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The suite file.
    #[arg(short = 'c', long = "config", default_value = "promptfooconfig.yaml")]
    pub config: PathBuf,
    /// Report files, by extension: .json, .jsonl, .xml (JUnit), .md. Repeatable.
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<PathBuf>,
    /// Requests in flight at once (overrides evaluateOptions.maxConcurrency).
    #[arg(short = 'j', long = "max-concurrency")]
    pub max_concurrency: Option<usize>,
    /// Runs of each test (overrides evaluateOptions.repeat).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Only tests whose description matches this regular expression.
    #[arg(long)]
    pub filter_pattern: Option<String>,
    /// Minimum pass rate for the gate, as a fraction (0.95) or a percentage (95). Default:
    /// 100 % without --baseline; with --baseline the gate is the comparison alone unless this
    /// is given.
    #[arg(long)]
    pub pass_rate: Option<f64>,
    /// Provider errors tolerated before the gate fails.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// Retries per request on connect errors, 408, 409, 429 and 5xx.
    #[arg(long, default_value_t = 2)]
    pub max_retries: u32,
    /// The grader for model-graded assertions that name none (e.g. `openai:chat:gpt-4.1`;
    /// its base URL and key come from OPENAI_BASE_URL and OPENAI_API_KEY).
    #[arg(long)]
    pub grader: Option<String>,
    /// Compare with a baseline: a stored run id or a `-o results.json` report. The gate fails
    /// when this run is significantly worse (exact McNemar, or a paired bootstrap with repeats).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Confidence for the baseline comparison.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Narrow the comparison to drops that matter: fail only when the run is significantly
    /// worse *and* its pass rate dropped by more than this fraction relative to the baseline.
    /// (Alone, a 2 % relative-drop rule fails a third to 40 % of pure-noise pairs, so it never
    /// fails a run by itself.)
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Resume an interrupted run (status `running`): keep its stored results and run only
    /// what is missing. The suite and options must be unchanged.
    #[arg(long, conflicts_with = "no_write")]
    pub resume: Option<String>,
    /// Run only the tests that failed or errored in this stored run.
    #[arg(long)]
    pub filter_failing: Option<String>,
    /// Send every request instead of answering repeats of earlier ones from the response cache.
    #[arg(long, env = "SLUICE_NO_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_cache: bool,
    /// The response cache directory (default: SLUICE_CACHE_DIR, else ~/.cache/sluice/responses).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not record the run in the store.
    #[arg(long)]
    pub no_write: bool,
    /// The registered version this run tests (`MODEL/VERSION` or `MODEL@ALIAS`): the run is
    /// added to its lineage.
    #[arg(long, value_name = "REF", conflicts_with = "no_write")]
    pub model_version: Option<String>,
}

/// `sluice bench [compare]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, args_override_self = true)]
pub struct BenchCommandArgs {
    /// A subcommand over results; without one, a load test is run.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Running a load test.
    #[command(flatten)]
    pub run: BenchArgs,
}

/// Subcommands over bench results.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Compare two results (`-o` JSON files or stored run ids) metric by metric.
    Compare(BenchCompareArgs),
}

/// `sluice bench compare`.
#[derive(Debug, Args)]
pub struct BenchCompareArgs {
    /// The baseline: a result JSON file or a stored bench run id.
    pub baseline: String,
    /// The candidate: a result JSON file or a stored bench run id.
    pub candidate: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Endpoints `sluice bench` can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchEndpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

/// Open-loop gap distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchArrival {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps.
    Poisson,
    /// Gamma gaps with `--burstiness` as the shape (vLLM's model; 1 is Poisson).
    Gamma,
}

/// Presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchPreset {
    /// p50/p99 latency and tokens/s at batch sizes 1, 4, 8 and 16 (3 warm-up and 50
    /// measured batches each).
    BatchSizes,
}

/// `sluice bench`. Every setting can also come from a YAML profile (`-c`), whose keys are the
/// flags' names in snake case; flags override it.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A YAML profile holding any of these settings.
    #[arg(short = 'c', long = "config", visible_alias = "profile")]
    pub config: Option<PathBuf>,
    /// Base URL of the OpenAI-compatible API (`http://host:8000/v1`; `/v1` is added to a bare
    /// host).
    #[arg(long)]
    pub url: Option<String>,
    /// Model name sent with each request.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// The endpoint [default: chat].
    #[arg(long, value_enum)]
    pub endpoint: Option<BenchEndpoint>,
    /// Open loop: requests per second, on a schedule computed ahead of time.
    #[arg(long, conflicts_with_all = ["concurrency", "sweep"])]
    pub rate: Option<f64>,
    /// Gaps between open-loop arrivals [default: poisson].
    #[arg(long, value_enum)]
    pub arrival: Option<BenchArrival>,
    /// Gamma shape for `--arrival gamma` (below 1 is burstier than Poisson); implies gamma.
    #[arg(long)]
    pub burstiness: Option<f64>,
    /// Closed loop: this many requests in flight, each sent when another finishes.
    #[arg(long, conflicts_with = "sweep")]
    pub concurrency: Option<usize>,
    /// With `--rate`: at most this many in flight (the wait is reported as `queue`). With
    /// `--sweep`: the throughput stage's concurrency [default: 256].
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Sweep: synchronous, maximum throughput, then evenly spaced rates between (N stages in
    /// all, default 10); prints a table and the knee of the latency curve.
    #[arg(long, num_args = 0..=1, default_missing_value = "10")]
    pub sweep: Option<usize>,
    /// Run for this long after the warm-up (`60s`, `2m`, `500ms`).
    #[arg(long, conflicts_with = "requests")]
    pub duration: Option<String>,
    /// Send this many measured requests [default: 200].
    #[arg(long)]
    pub requests: Option<usize>,
    /// Requests sent in this leading period are not measured (`10s`).
    #[arg(long)]
    pub warmup: Option<String>,
    /// `random`, a `.jsonl` file of `{"prompt": …, "output_tokens": …}` lines, or a ShareGPT
    /// `.json` file [default: random].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Random prompts' length in tokens [default: 512].
    #[arg(long)]
    pub input_tokens: Option<usize>,
    /// `max_tokens` of each request [default: 128].
    #[arg(long)]
    pub output_tokens: Option<u64>,
    /// Relative spread of random prompt lengths, 0 to 1 [default: 0].
    #[arg(long)]
    pub range_ratio: Option<f64>,
    /// Stream responses (the default; needed for TTFT, ITL and TPOT).
    #[arg(long, overrides_with = "no_stream")]
    pub stream: bool,
    /// Do not stream: only end-to-end latency is measured.
    #[arg(long)]
    pub no_stream: bool,
    /// Send `ignore_eos` so servers that support it always write `max_tokens`.
    #[arg(long)]
    pub ignore_eos: bool,
    /// SLOs for goodput, in ms: `ttft:200 tpot:50 e2el:5000`.
    #[arg(long, num_args = 1..)]
    pub goodput: Vec<String>,
    /// A gate, k6-style: `ttft.p99<500ms`, `e2el.p95<2s`, `error_rate<0.01`, `goodput>=20`.
    /// Repeatable.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// The run is invalid when the schedule lag p99 exceeds this [default: 10ms].
    #[arg(long)]
    pub max_lag: Option<String>,
    /// Per-request timeout [default: 600s].
    #[arg(long)]
    pub timeout: Option<String>,
    /// Seed for the schedule and the random prompts [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// A preset run.
    #[arg(long, value_enum, conflicts_with_all = ["rate", "concurrency", "sweep"])]
    pub preset: Option<BenchPreset>,
    /// Write the result as JSON (vLLM's field names plus Sluice's, with histograms).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Write a CSV summary, one row per run or stage.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Print the result JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Do not record the run in the store.
    #[arg(long)]
    pub no_write: bool,
    /// The registered version this run tests (`MODEL/VERSION` or `MODEL@ALIAS`): the run is
    /// added to its lineage.
    #[arg(long, value_name = "REF", conflicts_with = "no_write")]
    pub model_version: Option<String>,
}

/// `sluice gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The gateway config (routes, versions, split).
    #[arg(short = 'c', long = "config", default_value = "gateway.yaml")]
    pub config: PathBuf,
    /// Address of the OpenAI-compatible API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin API (loopback unless the config sets `admin.token_env`).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// Keep no request log and open no store (feedback and stored shadow comparisons need it).
    #[arg(long)]
    pub no_store: bool,
    /// Run this rollout spec inside the gateway (repeatable): its controller steers the routes
    /// in process, with no admin API call between them. State is in the store as with
    /// `sluice rollout start`, so `sluice rollout status|promote|abort` work on it.
    #[arg(long = "rollout", value_name = "SPEC")]
    pub rollouts: Vec<PathBuf>,
    /// Watch the traffic with this monitor file's alert rules, retraining triggers and smoke
    /// tests (the same file as `sluice serve --monitor`; needs the store).
    #[arg(long, value_name = "FILE")]
    pub monitor: Option<PathBuf>,
    /// This gateway is one of several replicas on one store: it follows the weights the
    /// store's rollouts leave on its routes (checked every second), whichever replica a
    /// rollout steers.
    #[arg(long)]
    pub replica: bool,
}

/// `sluice validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories (searched for `model.yaml`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// `text` (file:line:column: field: message), `json`, or `github` (workflow annotations).
    #[arg(long, default_value = "text", value_parser = ["text", "json", "github"])]
    pub format: String,
}

/// `sluice rollout …`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Run a rollout to its end in the foreground (or resume the unfinished run of the same
    /// name): exit 0 when promoted, 1 when rolled back.
    Start(RolloutStartArgs),
    /// Show a rollout's state (`--watch`: until it ends).
    Status(RolloutStatusArgs),
    /// Print the rollout's runbook: the manual rollback procedure with its names filled in.
    Runbook(RolloutNameArgs),
    /// List rollouts, newest first.
    List(RolloutListArgs),
    /// Show a rollout's transitions, measurements and rollbacks.
    History(RolloutNameArgs),
    /// Skip the current pause (or, with --full, every remaining step).
    Promote(RolloutPromoteArgs),
    /// Pause a running rollout.
    Pause(RolloutNameArgs),
    /// Resume a rollout paused by hand.
    Resume(RolloutNameArgs),
    /// Abort a running rollout: all traffic back to the stable version.
    Abort(RolloutAbortArgs),
    /// Run a finished (say, aborted) rollout again from its first step, with its stored spec.
    Retry(RolloutNameArgs),
    /// Send all of a finished rollout's route back to its stable version (or another one).
    Undo(RolloutUndoArgs),
    /// Write the rollout as another system's objects: an Argo Rollouts `Rollout` (canary
    /// steps, the Gateway API traffic plugin, the candidate's Deployment as its workload) and
    /// `AnalysisTemplate`s whose metrics query Prometheus with the spec's rules.
    Export(RolloutExportArgs),
}

/// `sluice rollout export`.
#[derive(Debug, Args)]
pub struct RolloutExportArgs {
    /// The rollout spec.
    pub spec: PathBuf,
    /// What to write.
    #[arg(long = "to", value_parser = ["argo-rollouts"])]
    pub to: String,
    /// The namespace of the objects.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The Deployment whose pod template is rolled out (default: the candidate's name).
    #[arg(long)]
    pub workload: Option<String>,
    /// The Service in front of the stable pods (default: ROUTE-STABLE).
    #[arg(long)]
    pub stable_service: Option<String>,
    /// The Service in front of the canary pods (default: ROUTE-CANDIDATE).
    #[arg(long)]
    pub canary_service: Option<String>,
    /// The HTTPRoute whose weights move (default: the route's name).
    #[arg(long)]
    pub http_route: Option<String>,
    /// The Prometheus that scrapes the in-cluster gateway (needed by rules on the gateway's
    /// window, which become PromQL over its `sluice_gateway_*` metrics).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Write here instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// `sluice rollout undo`.
#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    /// The rollout's name.
    pub name: String,
    /// The version to send all traffic to (default: the rollout's stable version).
    #[arg(long)]
    pub to_version: Option<String>,
    /// Name of the environment variable holding the gateway's admin token, if it needs one.
    #[arg(long)]
    pub admin_token_env: Option<String>,
}

/// `sluice rollout start`.
#[derive(Debug, Args)]
pub struct RolloutStartArgs {
    /// The rollout spec.
    pub spec: PathBuf,
}

/// `sluice rollout status`.
#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// The rollout's name (from its spec).
    pub name: String,
    /// Print each change until the rollout ends.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A rollout by name.
#[derive(Debug, Args)]
pub struct RolloutNameArgs {
    /// The rollout's name (from its spec).
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice rollout list`.
#[derive(Debug, Args)]
pub struct RolloutListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice rollout promote`.
#[derive(Debug, Args)]
pub struct RolloutPromoteArgs {
    /// The rollout's name.
    pub name: String,
    /// Go straight to 100 %.
    #[arg(long)]
    pub full: bool,
}

/// `sluice rollout abort`.
#[derive(Debug, Args)]
pub struct RolloutAbortArgs {
    /// The rollout's name.
    pub name: String,
    /// Why (recorded with the rollback).
    #[arg(long, default_value = "aborted by hand")]
    pub reason: String,
}

/// `sluice simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Profiles per model name (YAML); without it, any model name echoes the prompt.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed for latencies and faults, for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `sluice chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The user message.
    pub prompt: String,
    /// Base URL of the OpenAI-compatible API, including `/v1`.
    #[arg(
        long,
        env = "SLUICE_BASE_URL",
        default_value = "http://127.0.0.1:8000/v1"
    )]
    pub base_url: String,
    /// Model name.
    #[arg(long, short)]
    pub model: String,
    /// Name of the environment variable that holds the API key (the key itself is never
    /// accepted on the command line).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Output token cap.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Sampling seed.
    #[arg(long)]
    pub seed: Option<i64>,
    /// Use a non-streaming request.
    #[arg(long)]
    pub no_stream: bool,
    /// Timeout for the first token, in seconds.
    #[arg(long)]
    pub ttft_timeout_s: Option<f64>,
    /// Timeout for the whole request, in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub timeout_s: f64,
    /// Retries on connect errors, 408, 409, 429 and 5xx.
    #[arg(long, default_value_t = 2)]
    pub max_retries: u32,
    /// Print the generation and its timing as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice redteam [diff]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RedteamCommandArgs {
    /// A stored-run subcommand; without one, the probes are run.
    #[command(subcommand)]
    pub command: Option<RedteamCommand>,
    /// Running the probes.
    #[command(flatten)]
    pub run: RedteamArgs,
}

/// Subcommands over stored red-team runs.
#[derive(Debug, Subcommand)]
pub enum RedteamCommand {
    /// Compare two stored runs probe by probe: attacks that now succeed, attacks now resisted,
    /// and each category's success rate; exit 1 when an attack the baseline resisted now
    /// succeeds (or a benign probe it answered is now declined).
    Diff(RedteamDiffArgs),
}

/// `sluice redteam diff`.
#[derive(Debug, Args)]
pub struct RedteamDiffArgs {
    /// The baseline run id.
    pub baseline: String,
    /// The candidate run id.
    pub candidate: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice redteam`.
#[derive(Debug, Args)]
pub struct RedteamArgs {
    /// The config file.
    #[arg(short = 'c', long = "config", default_value = "redteam.yaml")]
    pub config: PathBuf,
    /// Report files, by extension: .sarif (SARIF 2.1.0), .json, .xml (JUnit), .html. Repeatable.
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<PathBuf>,
    /// Do not record the run in the store.
    #[arg(long)]
    pub no_write: bool,
    /// The registered version under test (`MODEL/VERSION` or `MODEL@ALIAS`): the run joins its
    /// lineage.
    #[arg(long, value_name = "REF", conflicts_with = "no_write")]
    pub model_version: Option<String>,
}

/// `sluice readiness`.
#[derive(Debug, Args)]
pub struct ReadinessArgs {
    /// `MODEL@ALIAS`, `MODEL/VERSION` or `MODEL`.
    pub reference: String,
    /// The window the service levels cover.
    #[arg(long, default_value = "1h", value_parser = sluice_config::parse_duration)]
    pub window: std::time::Duration,
    /// The gateway route its traffic goes through (default: the model name).
    #[arg(long)]
    pub route: Option<String>,
    /// The version's name in the gateway config (default: the registered version).
    #[arg(long)]
    pub gateway_version: Option<String>,
    /// Read the service levels from this Prometheus-compatible API instead of the store.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Prometheus query for availability (a fraction); default: over the gateway's metrics.
    #[arg(long, requires = "prometheus")]
    pub query_availability: Option<String>,
    /// Prometheus query for p95 latency in seconds.
    #[arg(long, requires = "prometheus")]
    pub query_p95: Option<String>,
    /// Prometheus query for the error rate (a fraction).
    #[arg(long, requires = "prometheus")]
    pub query_error_rate: Option<String>,
    /// Prometheus query for the requests in the window.
    #[arg(long, requires = "prometheus")]
    pub query_requests: Option<String>,
    /// Minimum availability, in percent.
    #[arg(long, default_value_t = 99.9)]
    pub min_availability: f64,
    /// Maximum p95 latency.
    #[arg(long, default_value = "2s", value_parser = sluice_config::parse_duration)]
    pub max_p95: std::time::Duration,
    /// Maximum error rate, in percent.
    #[arg(long, default_value_t = 1.0)]
    pub max_error_rate: f64,
    /// Fewer requests in the window and the service levels cannot be judged.
    #[arg(long, default_value_t = 100)]
    pub min_requests: u64,
    /// Available GPUs from this YAML file (`gpus: [{type, memory_gb, count}]`) instead of
    /// nvidia-smi.
    #[arg(long, conflicts_with = "no_capacity")]
    pub inventory: Option<PathBuf>,
    /// Do not check capacity.
    #[arg(long)]
    pub no_capacity: bool,
    /// Replicas to plan capacity for.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice registry …`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Register a version (immutable: a version is registered once).
    Register(RegisterArgs),
    /// List models (or one model's versions) with their aliases.
    List(RegistryListArgs),
    /// Show one version (`MODEL/VERSION`, `MODEL@ALIAS`, or `MODEL` for its latest) with its
    /// artifacts, tags, aliases and lineage.
    Show(RegistryRefArgs),
    /// Point an alias at a version, remove it, or show its history.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Add, change or remove tags of a version.
    Tag(TagArgs),
    /// Mark a version deprecated (it stays registered; `MODEL` alone no longer picks it).
    Deprecate(DeprecateArgs),
    /// Delete a version and its lineage; refused while an alias points at it.
    Delete(RegistryRefArgs),
    /// Link a run (eval, redteam, bench, rollout) to a version as its evidence.
    Link(LinkArgs),
    /// Re-hash a version's local artifacts and compare them with what was registered: exit 1
    /// when one is missing, truncated or changed.
    Verify(RegistryRefArgs),
}

/// `sluice registry register`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct RegisterArgs {
    /// Model name (a-z, 0-9, '-', '_', '.').
    pub model: String,
    /// Version, e.g. `1.2.0` or `gpt-4o/2024-11-20/v3` (model/provider-version/prompt-version).
    #[arg(long)]
    pub version: String,
    /// An artifact: file:///PATH (hashed here), s3://, hf://ORG/REPO@REV/PATH, oci://,
    /// https:// (recorded as given). Repeatable.
    #[arg(long = "artifact", value_name = "URI")]
    pub artifacts: Vec<String>,
    /// The SHA-256 of the artifact given in the same position: checked for local files,
    /// recorded for remote ones. Repeatable.
    #[arg(long = "sha256", value_name = "HEX")]
    pub sha256: Vec<String>,
    /// The version's model.yaml, validated and stored with it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A tag, KEY=VALUE. Repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// A stored eval (or redteam, bench) run that is this version's evidence. Repeatable.
    #[arg(long = "eval-run", value_name = "RUN_ID")]
    pub runs: Vec<String>,
    /// The source commit.
    #[arg(long)]
    pub commit: Option<String>,
    /// Print the registered version as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice registry list`.
#[derive(Debug, Args)]
pub struct RegistryListArgs {
    /// Only this model's versions.
    pub model: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A registry command on one version.
#[derive(Debug, Args)]
pub struct RegistryRefArgs {
    /// `MODEL/VERSION`, `MODEL@ALIAS` or `MODEL`.
    pub reference: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice registry alias …`.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Point ALIAS at VERSION (recorded in the alias history; webhooks in
    /// SLUICE_REGISTRY_WEBHOOK are told).
    Set(AliasSetArgs),
    /// Remove an alias (recorded in its history).
    Rm(AliasRmArgs),
    /// The history of a model's aliases (or one alias), oldest first.
    History(AliasHistoryArgs),
}

/// `sluice registry alias set`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct AliasSetArgs {
    /// Model.
    pub model: String,
    /// Alias, e.g. `production`.
    pub alias: String,
    /// Version.
    pub version: String,
    /// Why (kept in the history).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `sluice registry alias rm`.
#[derive(Debug, Args)]
pub struct AliasRmArgs {
    /// Model.
    pub model: String,
    /// Alias.
    pub alias: String,
    /// Why (kept in the history).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `sluice registry alias history`.
#[derive(Debug, Args)]
pub struct AliasHistoryArgs {
    /// Model.
    pub model: String,
    /// Only this alias.
    pub alias: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice registry tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// `MODEL/VERSION` or `MODEL@ALIAS`.
    pub reference: String,
    /// Tags to set, KEY=VALUE.
    pub tags: Vec<String>,
    /// A tag to remove. Repeatable.
    #[arg(long = "remove", value_name = "KEY")]
    pub remove: Vec<String>,
}

/// `sluice registry deprecate`.
#[derive(Debug, Args)]
pub struct DeprecateArgs {
    /// `MODEL/VERSION` or `MODEL@ALIAS`.
    pub reference: String,
    /// Why.
    #[arg(long)]
    pub reason: String,
}

/// `sluice registry link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// `MODEL/VERSION` or `MODEL@ALIAS`.
    pub reference: String,
    /// The stored run's id (its kind is read from the store).
    #[arg(long)]
    pub run: String,
}

/// `sluice store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Show where the store is, its schema version and what it holds.
    Info,
    /// List recorded runs, newest first.
    Runs(RunsArgs),
}

/// `sluice store runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this kind: eval, redteam, bench, rollout or quickstart.
    #[arg(long)]
    pub kind: Option<sluice_store::RunKind>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
