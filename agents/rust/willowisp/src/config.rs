//! Settings read once from the `WILLOWISP_*` environment at start. A malformed value never
//! stops the program: the default is used and the problem is kept for a fault record.

/// After a fallback to files the agent tries the collector again 1, 2, 4, 8, 16 s apart,
/// then every this many seconds, without end.
pub const STREAM_RETRY_MAX_S: f64 = 30.0;

/// Settings read once from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub out: String,
    pub mode: String,
    pub trace_ratio: f64,
    pub service: String,
    pub clock_offset_ns: i64,
    pub traceparent: String,
    pub boundaries: String,
    pub run_pid: u32,
    /// WILLOWISP_COLLECTOR: stream chunks there instead of writing files.
    pub collector: String,
    pub token: String,
    /// WILLOWISP_STREAM_RETRY_S: the longest wait between two reconnect attempts after a
    /// fallback to files (seconds, > 0; 30 when unset).
    pub stream_retry_s: f64,
    /// Problems with the variables, recorded as fault records once recording starts.
    pub problems: Vec<String>,
}

impl Config {
    /// Reads WILLOWISP_*; None when recording is off (no WILLOWISP_OUT, or DISABLED=1).
    pub fn from_env() -> Option<Config> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if get("WILLOWISP_DISABLED").is_some_and(|v| v.trim() != "0") {
            return None;
        }
        let out = get("WILLOWISP_OUT")?;
        let mut problems = Vec::new();
        let mode = match get("WILLOWISP_MODE").as_deref().map(str::trim) {
            None | Some("full") => "full".to_owned(),
            Some("hops") => "hops".to_owned(),
            Some(other) => {
                problems.push(format!("bad WILLOWISP_MODE {other:?}: using full"));
                "full".to_owned()
            }
        };
        let trace_ratio = match get("WILLOWISP_TRACE_RATIO").map(|v| v.trim().parse::<f64>()) {
            None => 1.0,
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
            Some(_) => {
                problems.push("bad WILLOWISP_TRACE_RATIO: using 1".to_owned());
                1.0
            }
        };
        let clock_offset_ns =
            match get("WILLOWISP_CLOCK_OFFSET_NS").map(|v| v.trim().parse::<i64>()) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    problems.push("bad WILLOWISP_CLOCK_OFFSET_NS: using 0".to_owned());
                    0
                }
            };
        let retry = get("WILLOWISP_STREAM_RETRY_S").map(|v| v.trim().parse::<f64>());
        let stream_retry_s = match retry {
            None => STREAM_RETRY_MAX_S,
            Some(Ok(s)) if s.is_finite() && s > 0.0 => s,
            Some(_) => {
                problems.push(format!(
                    "bad WILLOWISP_STREAM_RETRY_S: using {STREAM_RETRY_MAX_S}"
                ));
                STREAM_RETRY_MAX_S
            }
        };
        let run_pid = get("WILLOWISP_RUN_PID")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let service = get("WILLOWISP_SERVICE")
            .or_else(|| get("OTEL_SERVICE_NAME"))
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "rust".to_owned());
        Some(Config {
            out,
            mode,
            trace_ratio,
            service,
            clock_offset_ns,
            traceparent: get("TRACEPARENT").unwrap_or_default(),
            boundaries: get("WILLOWISP_BOUNDARIES").unwrap_or_default(),
            run_pid,
            collector: get("WILLOWISP_COLLECTOR")
                .map(|c| c.trim().to_owned())
                .unwrap_or_default(),
            token: std::env::var("WILLOWISP_TOKEN").unwrap_or_default(),
            stream_retry_s,
            problems,
        })
    }
}
