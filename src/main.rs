use clap::Parser;

fn main() {
    // candle asks for its thread count on every CPU matmul, and without RAYON_NUM_THREADS that
    // means reading /proc/cpuinfo each time (~100 times per decoded token). Work it out once,
    // here, before any thread exists to race the write.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    // Diagnostics (`RUST_LOG=info` logs the app's frame times, `debug` the loaders' steps) go to
    // standard error, and only when asked for: the commands' own output stays as documented.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = arbiter::cli::Cli::parse();
    match arbiter::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
