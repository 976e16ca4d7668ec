//! One table of cases, run on every host: each case is named `<host>::<group>::<case>` and runs
//! on a shared async runtime. A case on a host that cannot run here (no Spin binary) is reported
//! by the test runner as *ignored* with the reason, and listed again at the end: never as passed.
//! Apps that several cases use are started once per group ([`shared`]) and stopped at the end.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use tokio::sync::{Mutex as AsyncMutex, OwnedMappedMutexGuard, OwnedMutexGuard};

pub use super::host::HostKind;

type Body = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

pub struct Case {
    name: String,
    host: Option<HostKind>,
    skip: Option<String>,
    body: Body,
}

/// A case that runs on `host`; its name gets the host's name in front.
pub fn case<F, Fut>(host: HostKind, name: impl Into<String>, body: F) -> Case
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Case {
        name: format!("{}::{}", host.name(), name.into()),
        host: Some(host),
        skip: host.unavailable(),
        body: Box::new(move || Box::pin(body())),
    }
}

/// A case about nanohost alone (its CLI, its limits): no host prefix.
pub fn nanohost_only<F, Fut>(name: impl Into<String>, body: F) -> Case
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Case {
        name: format!("nanohost::{}", name.into()),
        host: None,
        skip: None,
        body: Box::new(move || Box::pin(body())),
    }
}

impl Case {
    /// Skips the case, with the reason, when `reason` is Some (and it is not skipped already).
    pub fn skip_if(mut self, reason: Option<String>) -> Case {
        if self.skip.is_none() {
            self.skip = reason;
        }
        self
    }
}

/// The skip reason for a case that shows a known difference of nanohost from Spin 3.6.3, on
/// nanohost: the case runs on Spin and is skipped on nanohost until nanohost is fixed. With
/// `HOST_TESTS_KNOWN_DIFFERENCES=run` it runs on nanohost too (to check a fix).
pub fn known_difference(host: HostKind, why: Option<&str>) -> Option<String> {
    let run_anyway = std::env::var("HOST_TESTS_KNOWN_DIFFERENCES").as_deref() == Ok("run");
    match why {
        Some(why) if host == HostKind::Nanohost && !run_anyway => {
            Some(format!("known difference from Spin 3.6.3: {why}"))
        }
        _ => None,
    }
}

/// The skip reason for the cases of a table with no known difference from Spin 3.6.3 today (any
/// `variant` and `case`): none. A table with one names it through [`known_difference`].
pub fn none_known<V>(host: HostKind, _variant: V, _case: &str) -> Option<String> {
    known_difference(host, None)
}

/// The runtime every case runs on; apps started in process live on it across cases.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// This test binary's folder under `target/host-tests/`: manifests copied for the apps, their
/// state and their hosts' logs. Removed when every case passed, kept (and named) otherwise.
pub fn run_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let binary = exe.file_stem().unwrap().to_string_lossy();
        let binary = binary.split('-').next().unwrap_or("tests").to_string();
        let root = super::target_dir().join("host-tests");
        // Folders of runs whose process is gone (a killed run leaves its folder behind).
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) {
                    if name.starts_with(&format!("{binary}-"))
                        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = root.join(format!("{binary}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the run's folder");
        dir
    })
    .clone()
}

type Teardown = Box<dyn FnOnce() + Send>;
static SHARED: Mutex<Option<HashMap<String, Arc<dyn Any + Send + Sync>>>> = Mutex::new(None);
static TEARDOWN: Mutex<Vec<Teardown>> = Mutex::new(Vec::new());

static FAILED_STARTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Dropped only when a start panics (forgotten otherwise).
struct MarkFailedStart(String);

impl Drop for MarkFailedStart {
    fn drop(&mut self) {
        if std::thread::panicking() {
            FAILED_STARTS.lock().unwrap().push(self.0.clone());
        }
    }
}

/// A value that several cases share (apps, brokers), started by the first case that asks for it
/// and stopped after the last case. Holding it excludes the other cases of the group, so that a
/// case that counts what is stored sees only its own writes.
pub type Shared<T> = OwnedMappedMutexGuard<Option<T>, T>;

/// Pushes one case per `$case` onto `$cases`: on `$host`, against one fixture per host and
/// `$variant` (anything with a `name()`, such as a store or a transport) that `$start` builds for
/// the first case that asks (see [`shared`]); skipped for the reason `$skip(host, variant, case)`.
#[macro_export]
macro_rules! on_shared {
    ($cases:ident, $host:expr, $variant:expr, |$h:ident, $v:ident, $key:ident| $start:expr,
     $skip:path, [$($case:ident),* $(,)?]) => {$({
        let (host, variant) = ($host, $variant);
        let name = format!("{}::{}", variant.name(), stringify!($case));
        $cases.push(
            $crate::support::harness::case(host, name, move || async move {
                let key = format!("{}-{}", host.name(), variant.name());
                let fixture = $crate::support::harness::shared(&key, || {
                    let ($h, $v, $key) = (host, variant, key.as_str());
                    $start
                })
                .await;
                $case(&fixture).await;
            })
            .skip_if($skip(host, variant, stringify!($case))),
        );
    })*};
}

/// Pushes one case per `$case(args)` (an async fn of the suite, called with those arguments) onto
/// `$cases`: on `$host`, named `$prefix` and the fn's name, skipped for the reason that a
/// `.skip_if(reason)` after it gives.
#[macro_export]
macro_rules! on_host {
    ($cases:ident, $host:expr, $prefix:expr,
     [$($case:ident($($arg:expr),*) $(.skip_if($skip:expr))?),* $(,)?]) => {$(
        $cases.push(
            $crate::support::harness::case(
                $host,
                format!("{}{}", $prefix, stringify!($case)),
                move || $case($($arg),*),
            )
            $(.skip_if($skip))?,
        );
    )*};
}

pub async fn shared<T, F, Fut>(key: &str, start: F) -> Shared<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let cell: Arc<AsyncMutex<Option<T>>> = {
        let mut map = SHARED.lock().unwrap();
        let entry = map.get_or_insert_with(HashMap::new).entry(key.to_string());
        let any = entry
            .or_insert_with(|| {
                let cell = Arc::new(AsyncMutex::new(None::<T>));
                let for_teardown = cell.clone();
                TEARDOWN.lock().unwrap().push(Box::new(move || {
                    // Dropped in the runtime: in-process hosts stop their tasks there.
                    runtime().block_on(async move {
                        for_teardown.lock().await.take();
                    });
                }));
                cell
            })
            .clone();
        any.downcast()
            .unwrap_or_else(|_| panic!("shared fixture {key} used with two types"))
    };
    let mut guard: OwnedMutexGuard<Option<T>> = cell.lock_owned().await;
    if guard.is_none() {
        // A start that failed once fails the group's other cases at once, instead of each
        // waiting out the start deadline again.
        if FAILED_STARTS.lock().unwrap().iter().any(|k| k == key) {
            panic!("{key} failed to start in an earlier case of its group (see that case)");
        }
        let mark = MarkFailedStart(key.to_string());
        *guard = Some(start().await);
        std::mem::forget(mark);
    }
    OwnedMutexGuard::map(guard, |value| value.as_mut().unwrap())
}

/// Runs the cases with the command line's filters (`cargo test --test X -- <filter>`), stops
/// the shared apps, lists the skipped cases, and exits with the result.
pub fn run(cases: Vec<Case>) -> ! {
    let args = Arguments::from_args();
    let skipped: Vec<(String, String)> = cases
        .iter()
        .filter_map(|c| c.skip.clone().map(|why| (c.name.clone(), why)))
        .filter(|(name, _)| args.filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    let trials = cases
        .into_iter()
        .map(|case| {
            let Case {
                name,
                host,
                skip,
                body,
            } = case;
            Trial::ignorable_test(name.clone(), move || {
                if let Some(why) = skip {
                    loud(&format!("SKIPPED {name} ({why})"));
                    return Ok(Completion::ignored_with(format!("SKIPPED ({why})")));
                }
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime().block_on(body())
                }));
                match result {
                    Ok(()) => Ok(Completion::Completed),
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".to_string());
                        let logs = super::host::live_logs()
                            .into_iter()
                            .filter(|(label, _)| {
                                host.is_none_or(|h| label.starts_with(&format!("{} ", h.name())))
                            })
                            .map(|(_, path)| super::host::tail(&path, 30))
                            .collect::<Vec<_>>()
                            .join("\n");
                        Err(Failed::from(format!("{message}\n{logs}")))
                    }
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let teardown: Vec<Teardown> = std::mem::take(&mut *TEARDOWN.lock().unwrap());
    for stop in teardown {
        stop();
    }
    if !skipped.is_empty() {
        loud(&format!(
            "{} case(s) SKIPPED, not passed:\n{}",
            skipped.len(),
            skipped
                .iter()
                .map(|(name, why)| format!("  {name}: {why}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if conclusion.has_failed() {
        loud(&format!(
            "hosts' logs and the apps' state are kept in {}",
            run_dir().display()
        ));
    } else {
        let _ = std::fs::remove_dir_all(run_dir());
    }
    conclusion.exit()
}

/// Straight to stderr, past any output capture.
pub fn loud(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}
