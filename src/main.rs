//! The `vigil` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vigil::capture::{ProbeOptions, probe};
use vigil::config::{self, CameraSpec, Fps, Source};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Watches camera streams and answers questions about what it saw"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// The config file.
        #[arg(long, short, default_value = "/etc/vigil/vigil.toml")]
        config: PathBuf,
        /// The API socket (overrides [daemon] socket).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Where the event store lives (overrides [daemon] state_dir).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Ask the running daemon a question about a camera.
    Ask {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        camera: String,
        /// How much recent footage: a span ("8s") or frames ("1 frame").
        #[arg(long)]
        window: Option<String>,
        /// yes-no, count, text, or choices:a,b,c
        #[arg(long, default_value = "yes-no")]
        answer: String,
        /// The question.
        question: String,
    },
    /// The running daemon's cameras, worker and store.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The standing questions and their last answers.
    Questions {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stored events, newest last; --follow keeps printing new ones.
    Events {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        camera: Option<String>,
        #[arg(long)]
        question: Option<String>,
        /// Unix milliseconds, or a span back from now ("10m").
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, short)]
        follow: bool,
    },
    /// Check a config file; exit 0 when valid, 2 when not.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Open a source as the daemon would and print one JSON line per frame.
    Probe {
        /// rtsp://…, http(s)://…, a file path, file:///…, v4l2:///dev/videoN or test:PATTERN.
        source: String,
        /// How many frames to sample.
        #[arg(long, default_value_t = 5)]
        frames: u32,
        /// Frames per second to sample.
        #[arg(long, default_value_t = 1.0)]
        fps: f64,
        /// Frame width (the height keeps the aspect ratio unless given).
        #[arg(long)]
        width: Option<u32>,
        #[arg(long)]
        height: Option<u32>,
        /// Give up when no frame arrives for this long ("10s").
        #[arg(long, default_value = "20s", value_parser = config::parse_duration)]
        timeout: std::time::Duration,
        /// Write the last frame as a JPEG here.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
    /// Answer a labelled dataset through the runtime (encoder, resampler,
    /// LM + adapter) and print accuracy per question family, one
    /// `name: value` line per figure.
    Eval {
        /// A directory with dataset.json (the model kit's `demo-data`).
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value = "models/smollm2-135m-instruct-q4_1.gguf")]
        lm: PathBuf,
        #[arg(long, default_value = "models/demo/xattn-smollm2-demo.gguf")]
        adapter: PathBuf,
        /// The demo model's encoder (the resampler's metadata names the
        /// feature width it was trained on).
        #[arg(long, default_value = "models/efficientnet-lite0-wide.onnx")]
        encoder: PathBuf,
        #[arg(long, default_value = "models/demo/resampler-demo.onnx")]
        resampler: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Only the first N items (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// The LM's tokenizer for the model kit: a JSON request on stdin
    /// ({"texts": [...], "plain": [...]}), token ids as JSON on stdout.
    #[command(hide = true)]
    Tokenize {
        #[arg(long)]
        lm: PathBuf,
    },
    /// The LM's hidden states for the model kit: token id sequences as
    /// JSON on stdin ({"sequences": [[...], ...]}), the output of layer
    /// --layer for every token written to --out as f32 rows.
    #[command(hide = true)]
    LmStates {
        #[arg(long)]
        lm: PathBuf,
        #[arg(long)]
        layer: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: u32,
    },
    /// Measure a stage's latency (median of N runs), one `name: value` line per figure.
    Bench {
        #[command(subcommand)]
        stage: BenchStage,
    },
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The daemon's socket (default: $VIGIL_SOCKET or /run/vigil/vigil.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print the daemon's JSON.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(vigil::api::cli::default_socket)
    }
}

fn bench_result(stage: &str, r: Result<(), impl std::fmt::Display>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil bench {stage}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Prints what a command produced on stdout, or its error on stderr (exit 1).
fn printed(command: &str, r: Result<String, String>) -> ExitCode {
    match r {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil {command}: {e}");
            ExitCode::from(1)
        }
    }
}

/// A model-kit helper command: a JSON request on stdin, `answer`'s JSON
/// reply on stdout (errors on stderr, exit 1).
fn kit_request(command: &str, answer: impl FnOnce(&str) -> Result<String, String>) -> ExitCode {
    vigil::logging::init("warn");
    let mut request = String::new();
    let reply = std::io::Read::read_to_string(&mut std::io::stdin(), &mut request)
        .map_err(|e| format!("stdin: {e}"))
        .and_then(|_| answer(&request))
        .map(|reply| format!("{reply}\n"));
    printed(command, reply)
}

fn client_result(r: Result<(), vigil::api::cli::CliError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e}");
            ExitCode::from(match e {
                vigil::api::cli::CliError::Usage(_) => 2,
                _ => 1,
            })
        }
    }
}

#[derive(Subcommand)]
enum BenchStage {
    /// The daemon through its socket: ask latency and how many cameras
    /// with 3 standing questions each it sustains.
    Daemon {
        #[arg(long)]
        lm: PathBuf,
        #[arg(long)]
        adapter: PathBuf,
        #[arg(long)]
        encoder: PathBuf,
        #[arg(long)]
        resampler: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Timed asks (after 3 warm-up ones).
        #[arg(long, default_value_t = 40)]
        asks: usize,
        /// The most cameras to try.
        #[arg(long, default_value_t = 32)]
        max_cameras: usize,
        /// How long each camera count must hold.
        #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
        hold: std::time::Duration,
        /// The cameras' videotestsrc pattern.
        #[arg(long, default_value = "ball")]
        pattern: String,
    },
    /// The image encoder and the Perceiver Resampler on tract.
    Vision {
        /// An encoder ONNX file (its .json beside it).
        #[arg(long)]
        encoder: Option<PathBuf>,
        /// The name printed for the encoder figure: NAME_ms.
        #[arg(long, default_value = "encoder")]
        label: String,
        /// A resampler ONNX file (its .json beside it).
        #[arg(long)]
        resampler: Option<PathBuf>,
        /// Frame counts T to run the resampler with.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        frames: Vec<usize>,
        /// Timed runs per figure (after two warm-up runs).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Threads for tract.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Also print the encoder's time per operator.
        #[arg(long)]
        profile: bool,
    },
    /// The LM on llama.cpp, plain and with a gated cross-attention adapter.
    Lm {
        /// The GGUF language model.
        #[arg(long)]
        lm: PathBuf,
        /// The adapter GGUF (its blocks run in the second setup).
        #[arg(long)]
        adapter: PathBuf,
        /// Timed runs per figure (after one warm-up run).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Threads for llama.cpp and the blocks.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Prompt length in tokens.
        #[arg(long, default_value_t = 256)]
        prompt_tokens: usize,
        /// Tokens generated one by one.
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ask {
            client,
            camera,
            window,
            answer,
            question,
        } => client_result(vigil::api::cli::ask(
            &client.socket(),
            &camera,
            &question,
            window.as_deref(),
            &answer,
            client.json,
        )),
        Command::Status { client } => {
            client_result(vigil::api::cli::status(&client.socket(), client.json))
        }
        Command::Questions { client } => {
            client_result(vigil::api::cli::questions(&client.socket(), client.json))
        }
        Command::Events {
            client,
            camera,
            question,
            since,
            limit,
            follow,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(camera.map(|c| ("camera", c)));
            query.extend(question.map(|q| ("question", q)));
            query.extend(since.map(|s| ("since", s)));
            client_result(vigil::api::cli::events(
                &client.socket(),
                &query,
                follow,
                client.json,
            ))
        }
        Command::Run {
            config,
            socket,
            state_dir,
        } => match vigil::daemon::run(&config, &vigil::daemon::Overrides { socket, state_dir }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vigil: {e}");
                ExitCode::from(1)
            }
        },
        Command::CheckConfig { file } => check_config(&file),
        Command::Bench {
            stage:
                BenchStage::Vision {
                    encoder,
                    label,
                    resampler,
                    frames,
                    runs,
                    threads,
                    profile,
                },
        } => {
            vigil::logging::init("warn");
            vigil::vision::set_threads(threads);
            let options = vigil::vision::bench::BenchOptions {
                encoder,
                encoder_label: label,
                resampler,
                frames,
                runs,
                profile,
            };
            bench_result(
                "vision",
                vigil::vision::bench::run(&options, &mut std::io::stdout().lock()),
            )
        }
        Command::Bench {
            stage:
                BenchStage::Lm {
                    lm,
                    adapter,
                    runs,
                    threads,
                    prompt_tokens,
                    gen_tokens,
                },
        } => {
            vigil::logging::init("warn");
            let options = vigil::lm::bench::BenchOptions {
                lm,
                adapter,
                threads,
                runs,
                prompt_tokens,
                gen_tokens,
            };
            bench_result(
                "lm",
                vigil::lm::bench::run(&options, &mut std::io::stdout().lock()),
            )
        }
        Command::Bench {
            stage:
                BenchStage::Daemon {
                    lm,
                    adapter,
                    encoder,
                    resampler,
                    threads,
                    asks,
                    max_cameras,
                    hold,
                    pattern,
                },
        } => {
            vigil::logging::init("warn");
            let options = vigil::daemon::bench::BenchOptions {
                lm,
                adapter,
                encoder,
                resampler,
                threads,
                asks,
                max_cameras,
                hold,
                pattern,
            };
            bench_result(
                "daemon",
                vigil::daemon::bench::run(&options, &mut std::io::stdout().lock()),
            )
        }
        Command::Eval {
            dataset,
            lm,
            adapter,
            encoder,
            resampler,
            threads,
            limit,
        } => {
            vigil::logging::init("warn");
            let options = vigil::eval::EvalOptions {
                lm,
                adapter,
                encoder,
                resampler,
                threads,
                limit,
            };
            let report = vigil::eval::Dataset::load(&dataset)
                .map_err(vigil::eval::EvalError::from)
                .and_then(|data| {
                    vigil::eval::evaluate(&options, &data, &mut std::io::stderr())
                        .map(|r| r.to_string())
                })
                .map_err(|e| e.to_string());
            printed("eval", report)
        }
        Command::Tokenize { lm } => {
            kit_request("tokenize", |request| vigil::eval::tokenize(&lm, request))
        }
        Command::LmStates {
            lm,
            layer,
            out,
            threads,
        } => kit_request("lm-states", |request| {
            vigil::eval::lm_states(&lm, layer, threads, request, &out)
        }),
        Command::Probe {
            source,
            frames,
            fps,
            width,
            height,
            timeout,
            snapshot,
        } => {
            vigil::logging::init("warn");
            let fail = |message: String| {
                eprintln!("vigil probe: {source}: {message}");
                ExitCode::from(1)
            };
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            let parsed = match Source::parse(&source, &cwd) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            if !(fps > 0.0 && fps <= config::defaults::MAX_FPS) {
                return fail(format!(
                    "--fps must be greater than 0 and at most {}",
                    config::defaults::MAX_FPS
                ));
            }
            let mut spec = CameraSpec::with_defaults("probe", parsed);
            spec.fps = Fps::from_f64(fps);
            if let Some(w) = width {
                spec.width = w;
            }
            spec.height = height;
            let options = ProbeOptions {
                frames,
                timeout,
                snapshot,
            };
            match probe(&spec, &options, &mut std::io::stdout().lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e.to_string()),
            }
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(cfg) => {
            for w in cfg.warnings.iter().chain(&training_warnings(&cfg)) {
                eprintln!("warning: {}: {w}", file.display());
            }
            println!(
                "{}: OK ({}, {})",
                file.display(),
                plural(cfg.cameras.len(), "camera"),
                plural(cfg.questions.len(), "question")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// A warning for each standing question about something the configured
/// adapter was not trained on (and one when the adapter cannot be read).
fn training_warnings(cfg: &config::Config) -> Vec<String> {
    let Some(path) = cfg.model.as_ref().and_then(|m| m.adapter.as_ref()) else {
        return Vec::new();
    };
    if !path.is_file() {
        return Vec::new(); // already warned about by the config check
    }
    let adapter = match vigil::lm::Adapter::load(path) {
        Ok(a) => a,
        Err(e) => return vec![format!("{e}")],
    };
    let name = format!(
        "adapter {}",
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    cfg.questions
        .iter()
        .filter_map(|q| {
            vigil::watch::outside_training(&q.ask, &adapter.config().trained_on, &name)
                .map(|w| format!("question \"{}\": {w}", q.name))
        })
        .collect()
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
