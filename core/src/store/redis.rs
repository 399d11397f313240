//! The Redis backend of the shared store and cache (PROTOCOL.md §5.6, §5.7, "Redis backend"):
//! the same `drover.store.*` and `drover.cache.*` operations, kept in a Redis server that several
//! masters — on several machines — share, so that their workers share one store and one cache.
//!
//! How the tree is laid out: one Redis string per **top-level key** of the tree
//! (`PREFIX t:users` holds the JSON of `users`), the set `PREFIX tops` of those keys, and for
//! times to live a sorted set per top-level key (`PREFIX ttl:users`: path → deadline in Unix ms)
//! plus `PREFIX expiry` (top-level key → its earliest deadline), which every master's sweeper
//! reads once a second. A write reads its top-level key, changes it in Rust with the embedded
//! store's own rules ([`Store`]), and commits it with a Lua script that applies it only if the
//! key is still what was read (optimistic, retried up to [`CAS_RETRIES`] times) and, in the same
//! atomic step, publishes the change on `PREFIX changes`: every master subscribed hears the
//! changes in the order they were committed, and tells its own watchers.
//!
//! The cache: `PREFIX cache:v:KEY` holds a loaded value (with Redis's own expiry for `ttl_ms`);
//! the one loader holds `PREFIX cache:l:KEY` = its token (`SET NX PX load_timeout`); `fill` and
//! `fail` are scripts that act only for the token that holds the lock and publish on
//! `PREFIX cache`, which wakes the waiters in every master (who also look again every
//! [`CACHE_POLL`], so a lost message or a loader whose lock ran out cannot hold them).

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

use super::backend::{CacheOutcome, Changes, StoreBackend};
use super::{Store, StoreError, StoreLimits};
use crate::request::{RequestError, RequestErrorCode};

/// Redis operations one master has in flight at once; past it a store or cache request is
/// answered `overloaded` at once.
pub const MAX_REDIS_PENDING: usize = 1024;
/// Connections one master opens to Redis: one multiplexed for every command, one subscribed.
pub const REDIS_CONNECTIONS: usize = 2;
/// How many times a write is tried again when another writer changed its top-level key between
/// the read and the commit; then it is answered `overloaded`.
pub const CAS_RETRIES: usize = 32;
/// How long one Redis command may take before the request is answered `unavailable`.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a waiting cache caller looks at the key again, besides the published fill.
pub const CACHE_POLL: Duration = Duration::from_millis(100);
/// How long a failed load's message stays for waiters that poll rather than hear it.
const FAILURE_KEPT: Duration = Duration::from_secs(5);

/// Where the store lives in Redis ([`crate::StoreConfig::redis`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (or `rediss://`, `redis+unix://`).
    pub url: String,
    /// Put before every key and channel, so that several groups share a server without sharing
    /// a store: masters with the same prefix share one. Default `drover:NAME:`.
    pub prefix: String,
}

fn unavailable(e: impl std::fmt::Display) -> RequestError {
    RequestError::new(
        RequestErrorCode::Unavailable,
        format!("the store's Redis cannot be reached: {e}"),
    )
}

fn refused(e: StoreError) -> RequestError {
    let code = match e {
        StoreError::Full { .. } | StoreError::TooManyExpiring { .. } => RequestErrorCode::Overloaded,
        _ => RequestErrorCode::BadRequest,
    };
    RequestError::new(code, e.to_string())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads a top-level key and which of its paths are past their deadline, in one atomic step.
const READ: &str = r"
return {redis.call('GET', KEYS[1]), redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])}
";

/// Commits a top-level key if it is still what was read ('v'..json, or 'n': absent); keeps its
/// deadlines and the set of keys; publishes the changes. 1: done, 0: changed meanwhile.
const COMMIT: &str = r"
local cur = redis.call('GET', KEYS[1])
local was = cur and ('v' .. cur) or 'n'
if was ~= ARGV[1] then return 0 end
if ARGV[2] == 'n' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[3], ARGV[3])
else
  redis.call('SET', KEYS[1], string.sub(ARGV[2], 2))
  redis.call('SADD', KEYS[3], ARGV[3])
end
local p = ARGV[4]
if p ~= '' then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if m == p or string.sub(m, 1, #p + 1) == p .. '.' then redis.call('ZREM', KEYS[2], m) end
  end
end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[2], ARGV[5], p) end
for i = 8, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then
  redis.call('ZADD', KEYS[4], first[2], ARGV[3])
else
  redis.call('ZREM', KEYS[4], ARGV[3])
end
if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return 1
";

/// Ends a load with its value, if `token` still holds the key's lock.
const FILL: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[2], ARGV[2])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Ends a load with a failure, if `token` still holds the key's lock.
const FAIL: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// A store operation's outcome: its result, and whether it changed something.
struct Outcome {
    result: Value,
    changed: Option<Value>,
}

/// One master's connection to the Redis backend.
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    pending: Arc<Semaphore>,
    limits: StoreLimits,
    read: Script,
    commit: Script,
    fill: Script,
    fail: Script,
    /// The runtime the connection lives in, for the master's synchronous `store`.
    runtime: tokio::runtime::Handle,
    /// Whether the subscription to the changes is up (a watch waits for it).
    subscribed: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish()
    }
}

impl RedisStore {
    /// A backend on `config`: checks the URL now, connects on first use (and again whenever the
    /// connection is lost). Must be called within a tokio runtime.
    pub fn new(config: &RedisConfig) -> Result<RedisStore, redis::RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(REDIS_RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_lazy(manager)?;
        Ok(RedisStore {
            client,
            conn,
            prefix: config.prefix.clone(),
            pending: Arc::new(Semaphore::new(MAX_REDIS_PENDING)),
            limits: StoreLimits::default(),
            read: Script::new(READ),
            commit: Script::new(COMMIT),
            fill: Script::new(FILL),
            fail: Script::new(FAIL),
            runtime: tokio::runtime::Handle::current(),
            subscribed: tokio::sync::watch::Sender::new(false),
        })
    }

    fn key(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    /// Waits until this master hears the published changes (at most [`REDIS_RESPONSE_TIMEOUT`],
    /// then `unavailable`): a watch answered after this hears every change committed later
    /// while the subscription holds.
    pub async fn wait_subscribed(&self) -> Result<(), RequestError> {
        let mut up = self.subscribed.subscribe();
        let waited = tokio::time::timeout(REDIS_RESPONSE_TIMEOUT, async { up.wait_for(|up| *up).await.is_ok() }).await;
        match waited {
            Ok(true) => Ok(()),
            _ => Err(unavailable("not subscribed to its changes")),
        }
    }

    /// The channel store changes are published on.
    pub fn changes_channel(&self) -> String {
        self.key("changes")
    }

    /// The channel cache fills and failures are published on.
    pub fn cache_channel(&self) -> String {
        self.key("cache")
    }

    /// A permit for one more operation in flight, or `overloaded`.
    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RequestError> {
        self.pending.clone().try_acquire_owned().map_err(|_| {
            RequestError::new(
                RequestErrorCode::Overloaded,
                format!("{MAX_REDIS_PENDING} operations on the store's Redis are in flight, the most a master holds"),
            )
        })
    }

    /// The top-level key's value (`None`: absent) and its paths now past their deadline.
    async fn read_top(&self, top: &str) -> Result<(Option<String>, Vec<String>), RequestError> {
        let mut conn = self.conn.clone();
        self.read
            .key(self.key(&format!("t:{top}")))
            .key(self.key(&format!("ttl:{top}")))
            .arg(unix_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// A top-level key's tree as a store of its own, with what is past its time removed; the
    /// paths removed.
    fn local(&self, top: &str, current: &Option<String>, due: &[String]) -> Result<(Store, Vec<String>), RequestError> {
        let now = std::time::Instant::now();
        let mut store = Store::new(self.limits);
        if let Some(json) = current {
            let value: Value = serde_json::from_str(json)
                .map_err(|e| unavailable(format!("{} holds what is not JSON: {e}", self.key(&format!("t:{top}")))))?;
            store.set(top, value, None, now).map_err(refused)?;
        }
        let mut expired = Vec::new();
        for path in due {
            if store.delete(path, now).unwrap_or(false) {
                expired.push(path.clone());
            }
        }
        Ok((store, expired))
    }

    /// One of `get`, `keys`, `set`, `delete`, `cas` (the same arguments as the embedded store).
    pub async fn store(
        &self,
        op: &str,
        path: &str,
        args: &Value,
        ttl: Option<Duration>,
    ) -> Result<Value, RequestError> {
        let _permit = self.permit()?;
        let check = Store::new(self.limits);
        let need_key = !matches!(op, "get" | "keys");
        check.check_path(path, need_key).map_err(refused)?;
        if path.is_empty() {
            return self.whole_tree(op).await;
        }
        let top = path.split('.').next().unwrap_or(path).to_string();
        for _ in 0..CAS_RETRIES {
            let (current, due) = self.read_top(&top).await?;
            let (mut store, expired) = self.local(&top, &current, &due)?;
            let now = std::time::Instant::now();
            let value = || args.get("value").cloned().unwrap_or(Value::Null);
            let outcome = match op {
                "get" => Outcome {
                    result: store.get(path, now).unwrap_or(Value::Null),
                    changed: None,
                },
                "keys" => Outcome {
                    result: json!(store.keys(path, now)),
                    changed: None,
                },
                "set" => {
                    store.set(path, value(), None, now).map_err(refused)?;
                    Outcome {
                        result: json!(true),
                        changed: Some(value()),
                    }
                }
                "delete" => {
                    let removed = store.delete(path, now).map_err(refused)?;
                    Outcome {
                        result: json!(removed),
                        changed: removed.then_some(Value::Null),
                    }
                }
                "cas" => {
                    let expected = args.get("expected").cloned().unwrap_or(Value::Null);
                    let swapped = store
                        .compare_and_set(path, &expected, value(), None, now)
                        .map_err(refused)?;
                    Outcome {
                        result: json!(swapped),
                        changed: swapped.then(value),
                    }
                }
                _ => {
                    return Err(RequestError::new(
                        RequestErrorCode::NoSuchHandler,
                        format!(
                        "the master has no handler \"drover.store.{op}\" (get, set, delete, cas, keys, watch, unwatch)"
                    ),
                    ))
                }
            };
            if outcome.changed.is_none() && expired.is_empty() {
                return Ok(outcome.result);
            }
            let deadline = match (&outcome.changed, ttl) {
                (Some(_), Some(ttl)) if op != "delete" => Some(unix_ms() + ttl.as_millis() as u64),
                _ => None,
            };
            let clear = outcome.changed.as_ref().map(|_| path);
            let mut changes: Changes = expired.iter().map(|p| (p.clone(), Value::Null)).collect();
            if let Some(v) = &outcome.changed {
                changes.push((path.to_string(), v.clone()));
            }
            if self
                .commit_top(&top, &current, &store, clear, deadline, &changes, &due)
                .await?
            {
                return Ok(outcome.result);
            }
        }
        Err(RequestError::new(
            RequestErrorCode::Overloaded,
            format!("{path:?}: {CAS_RETRIES} writes in a row were overtaken by other writers of {top:?}"),
        ))
    }

    /// Commits `store`'s `top` if Redis still holds `current`; whether it did.
    #[allow(clippy::too_many_arguments)]
    async fn commit_top(
        &self,
        top: &str,
        current: &Option<String>,
        store: &Store,
        clear: Option<&str>,
        deadline: Option<u64>,
        changes: &Changes,
        due: &[String],
    ) -> Result<bool, RequestError> {
        let expected = current.as_ref().map_or_else(|| "n".to_string(), |c| format!("v{c}"));
        let new = match store.tree().get(top) {
            Some(v) => format!("v{v}"),
            None => "n".to_string(),
        };
        let message = if changes.is_empty() {
            String::new()
        } else {
            let list: Vec<Value> = changes.iter().map(|(p, v)| json!({"path": p, "value": v})).collect();
            Value::Array(list).to_string()
        };
        let mut invocation = self.commit.prepare_invoke();
        invocation
            .key(self.key(&format!("t:{top}")))
            .key(self.key(&format!("ttl:{top}")))
            .key(self.key("tops"))
            .key(self.key("expiry"))
            .arg(expected)
            .arg(new)
            .arg(top)
            .arg(clear.unwrap_or(""))
            .arg(deadline.map(|d| d.to_string()).unwrap_or_default())
            .arg(self.changes_channel())
            .arg(message);
        for path in due {
            invocation.arg(path);
        }
        let mut conn = self.conn.clone();
        let done: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(done == 1)
    }

    /// `get` and `keys` of `""`: every top-level key.
    async fn whole_tree(&self, op: &str) -> Result<Value, RequestError> {
        let mut conn = self.conn.clone();
        let mut tops: Vec<String> = conn.smembers(self.key("tops")).await.map_err(unavailable)?;
        tops.sort();
        let mut tree = serde_json::Map::new();
        for top in tops {
            let (current, due) = self.read_top(&top).await?;
            let (mut store, _) = self.local(&top, &current, &due)?;
            if let Some(v) = store.get(&top, std::time::Instant::now()) {
                tree.insert(top, v);
            }
        }
        Ok(match op {
            "keys" => json!(tree.keys().collect::<Vec<_>>()),
            "get" => Value::Object(tree),
            _ => {
                return Err(RequestError::new(
                    RequestErrorCode::BadRequest,
                    format!("\"\" is not a store path: a key is needed for {op}"),
                ))
            }
        })
    }

    /// Removes what is past its time (at most 64 top-level keys a call), publishing each removal.
    pub async fn sweep(&self) -> Result<(), RequestError> {
        let mut conn = self.conn.clone();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("expiry"))
            .arg("-inf")
            .arg(unix_ms())
            .arg("LIMIT")
            .arg(0)
            .arg(64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for top in due {
            for _ in 0..CAS_RETRIES {
                let (current, due) = self.read_top(&top).await?;
                let (store, expired) = self.local(&top, &current, &due)?;
                let changes: Changes = expired.into_iter().map(|p| (p, Value::Null)).collect();
                if self
                    .commit_top(&top, &current, &store, None, None, &changes, &due)
                    .await?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// `get_or_load`: `{"value": V}` when loaded, `{"load": TOKEN}` to the one caller that must
    /// load it now, or `None`: another caller loads it, wait for [`RedisStore::cache_poll`] or a
    /// published outcome.
    pub async fn cache_get_or_load(&self, key: &str, load_timeout: Duration) -> Result<Option<Value>, RequestError> {
        let _permit = self.permit()?;
        if let Some(value) = self.cache_value(key).await? {
            return Ok(Some(json!({ "value": value })));
        }
        let mut conn = self.conn.clone();
        let token: u64 = conn.incr(self.key("cache:token"), 1).await.map_err(unavailable)?;
        let locked: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("cache:l:{key}")))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(load_timeout.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if locked.is_some() {
            return Ok(Some(json!({ "load": token })));
        }
        // Filled between the first look and the lock.
        Ok(self.cache_value(key).await?.map(|value| json!({ "value": value })))
    }

    async fn cache_value(&self, key: &str) -> Result<Option<Value>, RequestError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn
            .get(self.key(&format!("cache:v:{key}")))
            .await
            .map_err(unavailable)?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// For a waiting caller: the load's outcome if it ended (`None`: still loading).
    pub async fn cache_poll(&self, key: &str) -> Result<Option<CacheOutcome>, RequestError> {
        if let Some(value) = self.cache_value(key).await? {
            return Ok(Some(Ok(value)));
        }
        let mut conn = self.conn.clone();
        let (loading, failure): (bool, Option<String>) = redis::pipe()
            .exists(self.key(&format!("cache:l:{key}")))
            .get(self.key(&format!("cache:f:{key}")))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if loading {
            return Ok(None);
        }
        Ok(Some(Err(
            match failure.and_then(|f| serde_json::from_str::<RequestError>(&f).ok()) {
                Some(e) => e,
                None => RequestError::new(
                    RequestErrorCode::Timeout,
                    format!("the loader of {key:?} did not fill it within its load timeout"),
                ),
            },
        )))
    }

    /// `fill`: whether `token` still held the load.
    pub async fn cache_fill(
        &self,
        key: &str,
        token: u64,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, RequestError> {
        let _permit = self.permit()?;
        let mut conn = self.conn.clone();
        let done: i64 = self
            .fill
            .key(self.key(&format!("cache:l:{key}")))
            .key(self.key(&format!("cache:v:{key}")))
            .arg(token)
            .arg(value.to_string())
            .arg(ttl.map(|t| t.as_millis().to_string()).unwrap_or_default())
            .arg(self.cache_channel())
            .arg(json!({"key": key, "value": value}).to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    /// `fail` (or a loader gone): whether `token` still held the load.
    pub async fn cache_fail(&self, key: &str, token: u64, error: &RequestError) -> Result<bool, RequestError> {
        let _permit = self.permit()?;
        let mut conn = self.conn.clone();
        let error = serde_json::to_string(error).unwrap_or_default();
        let done: i64 = self
            .fail
            .key(self.key(&format!("cache:l:{key}")))
            .key(self.key(&format!("cache:f:{key}")))
            .arg(token)
            .arg(&error)
            .arg(FAILURE_KEPT.as_millis() as u64)
            .arg(self.cache_channel())
            .arg(format!(
                "{{\"key\":{},\"error\":{error}}}",
                Value::String(key.to_string())
            ))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    /// `delete`: whether a loaded value was removed.
    pub async fn cache_delete(&self, key: &str) -> Result<bool, RequestError> {
        let _permit = self.permit()?;
        let mut conn = self.conn.clone();
        let removed: u64 = conn
            .del(self.key(&format!("cache:v:{key}")))
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }

    /// Subscribes to the store's and the cache's channels, for as long as `alive` says, telling
    /// `on_changes` and `on_cache` what comes; connects again (after a second) whenever the
    /// connection is lost. Messages are handled as they arrive, one at a time.
    pub fn subscribe(
        self: &Arc<Self>,
        alive: impl Fn() -> bool + Send + 'static,
        on_changes: impl Fn(Changes) + Send + 'static,
        on_cache: impl Fn(String, CacheOutcome) + Send + 'static,
    ) -> BoxFuture<'static, ()> {
        let me = self.clone();
        Box::pin(async move {
            let changes = me.changes_channel();
            let cache = me.cache_channel();
            while alive() {
                let connected = async {
                    let mut pubsub = me.client.get_async_pubsub().await?;
                    pubsub.subscribe(&[&changes, &cache]).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                let pubsub = match tokio::time::timeout(REDIS_RESPONSE_TIMEOUT, connected).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the store's Redis: cannot subscribe; trying again in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!("the store's Redis: no answer to subscribe; trying again");
                        continue;
                    }
                };
                let mut stream = pubsub.into_on_message();
                me.subscribed.send_replace(true);
                loop {
                    // Looks up now and then whether the master is still there.
                    let msg = match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                        Err(_) if alive() => continue,
                        Err(_) => return,
                        Ok(None) => break,
                        Ok(Some(msg)) => msg,
                    };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(data) = serde_json::from_str::<Value>(&payload) else {
                        continue;
                    };
                    if msg.get_channel_name() == changes {
                        let list: Changes = data
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| Some((c.get("path")?.as_str()?.to_string(), c.get("value")?.clone())))
                            .collect();
                        on_changes(list);
                    } else if let Some(key) = data.get("key").and_then(Value::as_str) {
                        let outcome = match data.get("error") {
                            Some(e) => Err(serde_json::from_value(e.clone()).unwrap_or_else(|_| {
                                RequestError::new(RequestErrorCode::HandlerFailed, "the loader failed")
                            })),
                            None => Ok(data.get("value").cloned().unwrap_or(Value::Null)),
                        };
                        on_cache(key.to_string(), outcome);
                    }
                }
                me.subscribed.send_replace(false);
                tracing::warn!("the store's Redis: the subscription was lost; subscribing again (changes made meanwhile are not told)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

impl StoreBackend for RedisStore {
    fn store<'a>(
        &'a self,
        op: &'a str,
        path: &'a str,
        args: &'a Value,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<Value, RequestError>> {
        Box::pin(RedisStore::store(self, op, path, args, ttl))
    }

    fn wait_subscribed(&self) -> BoxFuture<'_, Result<(), RequestError>> {
        Box::pin(RedisStore::wait_subscribed(self))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<(), RequestError>> {
        Box::pin(RedisStore::sweep(self))
    }

    fn cache_get_or_load<'a>(
        &'a self,
        key: &'a str,
        load_timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Value>, RequestError>> {
        Box::pin(RedisStore::cache_get_or_load(self, key, load_timeout))
    }

    fn cache_poll<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CacheOutcome>, RequestError>> {
        Box::pin(RedisStore::cache_poll(self, key))
    }

    fn cache_fill<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        value: &'a Value,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<bool, RequestError>> {
        Box::pin(RedisStore::cache_fill(self, key, token, value, ttl))
    }

    fn cache_fail<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        error: &'a RequestError,
    ) -> BoxFuture<'a, Result<bool, RequestError>> {
        Box::pin(RedisStore::cache_fail(self, key, token, error))
    }

    fn cache_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, RequestError>> {
        Box::pin(RedisStore::cache_delete(self, key))
    }

    fn subscribe(
        self: Arc<Self>,
        alive: Box<dyn Fn() -> bool + Send>,
        on_changes: Box<dyn Fn(Changes) + Send>,
        on_cache: Box<dyn Fn(String, CacheOutcome) + Send>,
    ) -> BoxFuture<'static, ()> {
        RedisStore::subscribe(&self, alive, on_changes, on_cache)
    }

    fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}
