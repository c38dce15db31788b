//! Log records across the boundary: a plugin library installs a logger that
//! forwards every record to the host's callback ([`forward_to`]); the host's
//! callback ([`host_log`]) re-emits them under the `backplane::plugin`
//! target. Levels cross as codes (0 = off … 5 = trace), mapped here only.

use super::LogFn;
use abi_stable::std_types::RStr;

/// The code of a level filter.
pub(crate) fn filter_code(f: log::LevelFilter) -> u8 {
    f as usize as u8
}

/// The level filter of a code (anything above 5 is trace).
pub(crate) fn code_filter(code: u8) -> log::LevelFilter {
    match code {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// The level of a record's code (codes outside 1..=4 are trace).
fn code_level(code: u8) -> log::Level {
    code_filter(code.max(1))
        .to_level()
        .unwrap_or(log::Level::Trace)
}

/// The host's log callback: a plugin's record, re-emitted by the host.
pub(crate) extern "C" fn host_log(level: u8, target: RStr<'_>, message: RStr<'_>) {
    log::log!(target: "backplane::plugin", code_level(level), "[{}] {}", target.as_str(), message.as_str());
}

/// Log targets (prefixes) whose records are forwarded at debug level at
/// most; see [`demote_log_target`].
static DEMOTED: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());

/// Forward the log records of targets starting with `prefix` at debug
/// level at most, for a dependency that warns about things that are not
/// the user's concern. Affects only the calling plugin's library.
pub fn demote_log_target(prefix: &'static str) {
    let mut d = DEMOTED.write().unwrap_or_else(|p| p.into_inner());
    if !d.contains(&prefix) {
        d.push(prefix);
    }
}

/// Log targets (prefixes) whose records are never forwarded; see
/// [`silence_log_target`].
static SILENCED: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());

/// Never forward the log records of targets starting with `prefix`, for a
/// dependency that logs what must not be seen (a request signer that
/// prints the credentials it loaded). Affects only the calling plugin's
/// library.
pub fn silence_log_target(prefix: &'static str) {
    let mut s = SILENCED.write().unwrap_or_else(|p| p.into_inner());
    if !s.contains(&prefix) {
        s.push(prefix);
    }
}

struct ForwardLogger(LogFn);

impl log::Log for ForwardLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if SILENCED
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| record.target().starts_with(p))
        {
            return;
        }
        let mut level = record.level();
        if level < log::Level::Debug
            && DEMOTED
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|p| record.target().starts_with(p))
        {
            if log::max_level() < log::LevelFilter::Debug {
                return;
            }
            level = log::Level::Debug;
        }
        let msg = record.args().to_string();
        (self.0.log)(
            level as usize as u8,
            RStr::from_str(record.target()),
            RStr::from_str(&msg),
        );
    }
    fn flush(&self) {}
}

/// In a plugin library: forward this library's log records to the host.
pub(crate) fn forward_to(logger: LogFn, max_level: u8) {
    if log::set_boxed_logger(Box::new(ForwardLogger(logger))).is_ok() {
        log::set_max_level(code_filter(max_level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_codes_round_trip() {
        for f in [
            log::LevelFilter::Off,
            log::LevelFilter::Error,
            log::LevelFilter::Warn,
            log::LevelFilter::Info,
            log::LevelFilter::Debug,
            log::LevelFilter::Trace,
        ] {
            assert_eq!(code_filter(filter_code(f)), f);
        }
        assert_eq!(code_level(1), log::Level::Error);
        assert_eq!(code_level(4), log::Level::Debug);
        assert_eq!(code_level(9), log::Level::Trace);
        assert_eq!(log::Level::Warn as usize, 2, "record codes are log's own");
    }
}
