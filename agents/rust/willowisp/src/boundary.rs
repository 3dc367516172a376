//! Declared boundaries: the transactions recorded at full fidelity even in `hops` mode.
//!
//! A SPEC (`entry=http:POST /checkout;exit=http:reply;runtimes=python,rust`, the syntax of
//! `willowisp/model/boundary.py`) comes from `WILLOWISP_BOUNDARIES` (separated by `|`) or
//! from `willowisp ctl enable`. Its id is the first 8 hex digits of SHA-256 of the entry,
//! the same in every runtime, so a caller inside a boundary carries it in `tracestate`
//! as `wisp=b-<id>`.
//!
//! An *instance* opens when a server adapter takes an inbound hop whose entry matches (or
//! whose tracestate carries the member of a boundary that allows `rust`) and closes when
//! the reply is sent. While it lasts the handling unit is marked with the boundary in the
//! unit table ([`crate::gate`]); tasks it spawns inherit the mark for their whole life.
//! The list only grows (an index is a boundary's identity in the unit table); a boundary
//! switched off opens no new instances.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{json, Map, Value as J};

pub(crate) const RUNTIME: &str = "rust";

/// True while `tracing` is asked again about every callsite after a switch: a task
/// spawned then may have missed some of its waker events (their callsites not switched
/// yet), so it is never judged for a lost waker.
pub(crate) static SWITCHING: AtomicBool = AtomicBool::new(false);
/// tracestate key of the boundary member (`wisp=b-<id>`).
pub(crate) const STATE_KEY: &str = "wisp";

/// One boundary this process knows, with its switch and its counters.
pub(crate) struct Boundary {
    pub(crate) spec: String,
    /// `PROTOCOL:WHAT`, how people and `ctl` name it.
    pub(crate) entry: String,
    pub(crate) runtimes: Vec<String>,
    /// 8 hex digits of SHA-256 of the entry.
    pub(crate) id: String,
    pub(crate) enabled: AtomicBool,
    /// config or ctl.
    pub(crate) source: &'static str,
    /// Instances opened by a matching inbound hop.
    pub(crate) entries: AtomicU64,
    /// Instances opened by a caller's `wisp` tracestate member.
    pub(crate) propagated: AtomicU64,
    /// Instances in flight.
    pub(crate) active: AtomicU64,
}

impl Boundary {
    fn allows(&self, runtime: &str) -> bool {
        self.runtimes.is_empty() || self.runtimes.iter().any(|r| r == runtime)
    }

    /// Does an inbound hop (protocol, its method, its path / full method / destination)
    /// start this boundary?
    pub(crate) fn matches(&self, protocol: &str, method: &str, target: &str) -> bool {
        let (want_protocol, what) = self.entry.split_once(':').unwrap_or(("", ""));
        let want_protocol = want_protocol.trim().to_ascii_lowercase();
        let what = what.trim();
        if !protocol.eq_ignore_ascii_case(&want_protocol) {
            return false;
        }
        match want_protocol.as_str() {
            "http" => {
                let (mut want_method, mut want_path) = what.split_once(' ').unwrap_or((what, ""));
                if want_path.is_empty() && want_method.starts_with('/') {
                    (want_method, want_path) = ("", want_method);
                }
                let path = target.split('?').next().unwrap_or("");
                if !want_method.is_empty()
                    && want_method != "*"
                    && !want_method.eq_ignore_ascii_case(method)
                {
                    return false;
                }
                want_path.is_empty() || glob(want_path.trim(), path)
            }
            "grpc" => glob(
                &format!("/{}", what.trim_start_matches('/')),
                &format!("/{}", target.trim_start_matches('/')),
            ),
            _ => glob(what, target),
        }
    }
}

/// fnmatch-style matching, case-sensitive: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // iterative matcher with one backtrack point for the last `*`
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, next)) = class(&p, pi, t[ti]) {
                        if hit {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1; // an unclosed [ is itself
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `[...]` class at `p[at]`: whether `c` is in it and where the pattern goes on; None
/// when the class is not closed.
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = i < p.len() && p[i] == '!';
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() && (first || p[i] != ']') {
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((hit != negate, i + 1))
}

/// Parses a boundary SPEC; the error says what is wrong (the CLI refuses bad specs up
/// front, so here one is an agent fault or a `bad-boundary` answer on the control channel).
pub(crate) fn parse_spec(spec: &str, source: &'static str) -> Result<Boundary, String> {
    let cut = |s: &str| s.chars().take(64).collect::<String>();
    let (mut entry, mut exit, mut runtimes) = (None, None, None);
    for part in spec.split(';') {
        if part.trim().is_empty() {
            continue;
        }
        let slot = match part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("entry", v)) => (&mut entry, v),
            Some(("exit", v)) => (&mut exit, v),
            Some(("runtimes", v)) => (&mut runtimes, v),
            _ => {
                return Err(format!(
                    "{:?} is not one of entry=..., exit=..., runtimes=...",
                    cut(part.trim())
                ))
            }
        };
        if slot.0.replace(slot.1.to_owned()).is_some() {
            return Err(format!(
                "{} is given twice",
                cut(part.split('=').next().unwrap_or(""))
            ));
        }
    }
    let entry = entry.unwrap_or_default();
    match entry.split_once(':') {
        Some((p, w)) if !p.trim().is_empty() && !w.trim().is_empty() => {}
        _ => return Err("needs entry=PROTOCOL:WHAT, e.g. entry=http:POST /checkout".into()),
    }
    if exit
        .as_deref()
        .is_some_and(|e| !e.is_empty() && !e.contains(':'))
    {
        return Err("exit must be PROTOCOL:WHAT, e.g. exit=http:reply".into());
    }
    let runtimes: Vec<String> = runtimes
        .unwrap_or_default()
        .split(',')
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    if let Some(bad) = runtimes
        .iter()
        .find(|r| !["python", "go", "java", "rust", "nodejs"].contains(&r.as_str()))
    {
        return Err(format!("unknown runtime {:?}", cut(bad)));
    }
    let entry = entry.trim().to_owned();
    Ok(Boundary {
        spec: spec.to_owned(),
        id: crate::sha256::hex(entry.as_bytes())[..8].to_owned(),
        entry,
        runtimes,
        enabled: AtomicBool::new(true),
        source,
        entries: AtomicU64::new(0),
        propagated: AtomicU64::new(0),
        active: AtomicU64::new(0),
    })
}

/// Every boundary the process knows. Append-only: index + 1 is a boundary's mark in the
/// unit table.
pub(crate) struct Boundaries {
    list: RwLock<Vec<Arc<Boundary>>>,
    /// Events written by units inside each boundary, by mark (the first 255 boundaries;
    /// an array rather than a field of each, so counting takes no lock).
    events: Box<[AtomicU64]>,
    /// Whether any boundary was ever declared (then events are counted per boundary).
    pub(crate) any: AtomicBool,
    /// Some boundary is switched on: in `hops` mode the tokio subscriber takes tokio's
    /// spans and events only then (its `enabled` reads this first).
    pub(crate) live: AtomicBool,
}

impl Default for Boundaries {
    fn default() -> Self {
        Boundaries {
            list: RwLock::new(Vec::new()),
            events: (0..256).map(|_| AtomicU64::new(0)).collect(),
            any: AtomicBool::new(false),
            live: AtomicBool::new(false),
        }
    }
}

/// The outcome of [`Boundaries::enable`].
pub(crate) enum Switched {
    Known(String),
    Added(String),
}

impl Boundaries {
    /// The boundaries of `WILLOWISP_BOUNDARIES`; the bad SPECs' problems are returned.
    pub(crate) fn from_config(specs: &str) -> (Boundaries, Vec<String>) {
        let b = Boundaries::default();
        let mut problems = Vec::new();
        for spec in specs.split('|').filter(|s| !s.trim().is_empty()) {
            match parse_spec(spec.trim(), "config") {
                Ok(x) => b.add(x),
                Err(e) => problems.push(format!("bad WILLOWISP_BOUNDARIES {:?}: {e}", spec)),
            }
        }
        (b, problems)
    }

    fn add(&self, x: Boundary) {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if list.len() < 0xffff && !list.iter().any(|b| b.entry == x.entry) {
            list.push(Arc::new(x));
            self.any.store(true, Ordering::Release);
        }
        drop(list);
        self.relive();
    }

    /// Recomputes `live` after a boundary was added or switched.
    fn relive(&self) {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        let on = list.iter().any(|b| b.enabled.load(Ordering::Acquire));
        drop(list);
        if self.live.swap(on, Ordering::AcqRel) != on {
            // `hops` mode's tokio subscriber takes tokio's callsites only while `live`:
            // have tracing ask it again about every callsite
            SWITCHING.store(true, Ordering::Release);
            tracing_core::callsite::rebuild_interest_cache();
            SWITCHING.store(false, Ordering::Release);
        }
    }

    /// One more event written inside the boundary of `mark`.
    #[inline]
    pub(crate) fn count(&self, mark: u32) {
        if let Some(c) = self.events.get(mark as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The boundary of a mark (index + 1).
    pub(crate) fn get(&self, mark: u32) -> Option<Arc<Boundary>> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.get((mark as usize).wrapping_sub(1)).cloned()
    }

    fn find(&self, name: &str) -> Option<Arc<Boundary>> {
        let key = name.trim();
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .find(|b| {
                b.entry == key
                    || b.spec == key
                    || b.id == key
                    || key.strip_prefix("b-") == Some(b.id.as_str())
            })
            .cloned()
    }

    /// An inbound hop: the mark of the first enabled boundary it opens, if any (counted as
    /// an entry, or as propagated when only the caller's `wisp` member names it).
    pub(crate) fn open(&self, protocol: &str, method: &str, target: &str, member: &str) -> u32 {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        let enabled = |b: &Boundary| b.enabled.load(Ordering::Acquire);
        let mut found = list
            .iter()
            .position(|b| enabled(b) && b.matches(protocol, method, target));
        match found {
            Some(i) => list[i].entries.fetch_add(1, Ordering::Relaxed),
            None => {
                let id = member.strip_prefix("b-").unwrap_or("\u{0}");
                found = list
                    .iter()
                    .position(|b| enabled(b) && b.id == id && b.allows(RUNTIME));
                match found {
                    Some(i) => list[i].propagated.fetch_add(1, Ordering::Relaxed),
                    None => return 0,
                }
            }
        };
        let i = found.unwrap_or(0);
        list[i].active.fetch_add(1, Ordering::Relaxed);
        i as u32 + 1
    }

    /// The instance `open` returned `mark` for has replied.
    pub(crate) fn close(&self, mark: u32) {
        if let Some(b) = self.get(mark) {
            let _ = b
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// `ctl enable`: a known boundary by name (entry), spec or id, else a new one from a SPEC.
    pub(crate) fn enable(&self, name: &str) -> Result<Switched, String> {
        if let Some(b) = self.find(name) {
            b.enabled.store(true, Ordering::Release);
            self.relive();
            return Ok(Switched::Known(b.entry.clone()));
        }
        let x = parse_spec(name, "ctl")?;
        if let Some(b) = self.find(&x.entry) {
            b.enabled.store(true, Ordering::Release);
            self.relive();
            return Ok(Switched::Known(b.entry.clone()));
        }
        let entry = x.entry.clone();
        self.add(x);
        Ok(Switched::Added(entry))
    }

    /// `ctl disable`: no new instances (those in flight finish). None: not known.
    pub(crate) fn disable(&self, name: &str) -> Option<String> {
        let b = self.find(name)?;
        b.enabled.store(false, Ordering::Release);
        self.relive();
        Some(b.entry.clone())
    }

    /// Per boundary: spec, source, the counters, and what its events cost (`hook_ns`: the
    /// recording calls, `serialize_ns`: the flusher's encoding, both measured per event).
    pub(crate) fn costs(&self, hook_ns: i64, encode_ns: i64) -> Vec<(String, J)> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .enumerate()
            .map(|(i, b)| {
                let events = self
                    .events
                    .get(i + 1)
                    .map_or(0, |c| c.load(Ordering::Relaxed)) as i64;
                let v = json!({
                    "spec": b.spec, "id": b.id, "source": b.source,
                    "enabled": b.enabled.load(Ordering::Relaxed),
                    "entries": b.entries.load(Ordering::Relaxed),
                    "propagated": b.propagated.load(Ordering::Relaxed),
                    "active": b.active.load(Ordering::Relaxed),
                    "events": events,
                    "hook_ns": events * hook_ns,
                    "serialize_ns": events * encode_ns,
                    "cost_ns": events * (hook_ns + encode_ns),
                });
                (b.entry.clone(), v)
            })
            .collect()
    }

    /// The stats record's `by_boundary` (None when the process has no boundaries).
    pub(crate) fn by_boundary_json(&self, hook_ns: i64, encode_ns: i64) -> Option<String> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut m = Map::new();
        for (name, mut v) in self.costs(hook_ns, encode_ns) {
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
                o.remove("enabled");
            }
            m.insert(name, v);
        }
        Some(J::Object(m).to_string())
    }
}

/// The `wisp` member of a `tracestate` value ('' if none).
pub(crate) fn member_of(tracestate: &str) -> &str {
    tracestate
        .split(',')
        .filter_map(|m| m.trim().split_once('='))
        .find(|(k, _)| *k == STATE_KEY)
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}

/// `tracestate` for an outgoing hop made inside boundary `id`: the `wisp` member first,
/// the other members of `existing` after it (W3C: the updated member moves to the front).
pub(crate) fn with_member(existing: &str, id: &str) -> String {
    let mut out = format!("{STATE_KEY}=b-{id}");
    for m in existing.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        if m.split('=').next().map(str::trim) != Some(STATE_KEY) {
            out.push(',');
            out.push_str(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_specs() {
        let b = parse_spec(
            "entry=http:POST /checkout;exit=http:reply;runtimes=python,rust",
            "config",
        )
        .unwrap();
        assert_eq!(b.entry, "http:POST /checkout");
        // the same id as willowisp/model/boundary.py: sha256("http:POST /checkout")[:8]
        assert_eq!(b.id, "4f365009");
        for bad in [
            "entry=",
            "entry=http",
            "exit=x;entry=http:GET /",
            "entry=http:GET /;runtimes=cobol",
            "nope",
            "entry=a:b;entry=a:c",
        ] {
            assert!(parse_spec(bad, "config").is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_match_like_the_python_agent() {
        let b = parse_spec("entry=http:POST /orders/*", "config").unwrap();
        assert!(b.matches("http", "post", "/orders/7?x=1"));
        assert!(!b.matches("http", "GET", "/orders/7"));
        assert!(!b.matches("grpc", "POST", "/orders/7"));
        let p = parse_spec("entry=http:/a/[0-9]?", "config").unwrap();
        assert!(p.matches("http", "GET", "/a/1x") && !p.matches("http", "GET", "/a/x1"));
        let g = parse_spec("entry=grpc:pkg.Svc/*", "config").unwrap();
        assert!(g.matches("grpc", "", "/pkg.Svc/Get") && !g.matches("grpc", "", "/pkg.Other/Get"));
        assert!(glob("*a*b", "xxaxxb") && !glob("*a*b", "xxaxxc") && glob("", ""));
    }

    #[test]
    fn live_follows_the_switches() {
        let (b, problems) = Boundaries::from_config("");
        assert!(problems.is_empty());
        assert!(!b.live.load(Ordering::Relaxed) && !b.any.load(Ordering::Relaxed));
        assert!(matches!(
            b.enable("entry=amqp:orders.*"),
            Ok(Switched::Added(_))
        ));
        assert!(b.live.load(Ordering::Relaxed));
        assert_eq!(b.open("amqp", "", "orders.new", ""), 1);
        assert_eq!(b.open("amqp", "", "audit", ""), 0);
        b.close(1);
        assert_eq!(b.disable("amqp:orders.*").as_deref(), Some("amqp:orders.*"));
        assert!(!b.live.load(Ordering::Relaxed) && b.any.load(Ordering::Relaxed));
        assert_eq!(b.open("amqp", "", "orders.new", ""), 0);
        assert!(matches!(b.enable("amqp:orders.*"), Ok(Switched::Known(_))));
        assert!(b.live.load(Ordering::Relaxed));
    }

    #[test]
    fn tracestate_members() {
        assert_eq!(member_of("a=1, wisp=b-0011aabb ,c=2"), "b-0011aabb");
        assert_eq!(member_of("a=1"), "");
        assert_eq!(
            with_member("a=1,wisp=b-old", "cafe0001"),
            "wisp=b-cafe0001,a=1"
        );
    }
}
