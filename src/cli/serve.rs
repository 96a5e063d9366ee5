//! `registry serve`: the settings layered and checked, then the server
//! (`server::serve`, where its parts are built and started).

use std::process::ExitCode;

use super::CliResult;

/// `registry serve`: the layered settings, checked as `registry config
/// check` checks them, then the service until SIGINT/SIGTERM.
pub fn serve(args: &crate::config::ServeArgs, globals: &crate::config::GlobalArgs) -> CliResult {
    let loaded = crate::config::load(args, globals)?;
    super::init_tracing(loaded.settings.log_format);
    crate::log::store::set_sled_tuning(crate::log::store::SledTuning {
        cache_mib: loaded.settings.sled_cache_mib,
    });
    if let Some((path, _)) = &loaded.file {
        tracing::info!(config_file = %path.display(), "settings from the config file, REGISTRY_* variables and flags");
    }
    for name in &loaded.ignored_env {
        tracing::warn!(variable = %name, "set, but not a configuration key: ignored");
    }
    let report = crate::config::check::check_before_start(&loaded);
    if let Some(refusal) = report.refusal() {
        return Err(refusal.into());
    }
    let config = loaded.serve_config();
    // sled reads run on the blocking pool; they are short and mostly
    // CPU-bound, so a few dozen threads suffice: the cap keeps a burst
    // of requests from growing the pool (and its memory) to hundreds.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(crate::limits::BLOCKING_THREADS_MAX)
        .build()?;
    runtime.block_on(crate::server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}
