use clap::Parser;

fn main() {
    // candle asks for its thread count on every CPU matmul, and without RAYON_NUM_THREADS that
    // means reading /proc/cpuinfo each time (~100 times per decoded token). Work it out once,
    // here, before any thread exists to race the write.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
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
