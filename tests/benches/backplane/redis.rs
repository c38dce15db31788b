//! `redis`: 100k SET+GET pairs, sequential and from 64 concurrent tokio
//! tasks, through the redis plugin (the async API both ways: awaited
//! through the plugin's callback, and on tokio's blocking pool) vs the
//! redis crate's multiplexed async connection; and 100k conversation
//! messages appended in batches of 100 (`add_messages` vs a pipelined
//! RPUSH + LTRIM) and read back (skipped when no Redis answers;
//! `BACKPLANE_REDIS_URL`).

use crate::harness::{bench_dir, interleaved, open, runtime, spawn_tasks, Row, Variant};
use backplane_host::CacheStore;

const REDIS_OPS: usize = 100_000;
const REDIS_TASKS: usize = 64;
const MSG_TOTAL: usize = 100_000;
const MSG_BATCH: usize = 100;
const MSG_CHANNELS: usize = 100;
const MSG_BOUND: usize = 1_000;

/// SET then GET of `value` under `bp-bench:{ns}:{tag}:{i}` for every i of
/// `keys`, through the redis crate.
async fn direct_set_get(
    c: &mut redis::aio::MultiplexedConnection,
    ns: &str,
    tag: &str,
    keys: impl Iterator<Item = usize>,
    value: &[u8],
) {
    for i in keys {
        let k = format!("bp-bench:{ns}:{tag}:{i}");
        redis::AsyncCommands::set::<_, _, ()>(c, &k, value)
            .await
            .unwrap();
        let v: Vec<u8> = redis::AsyncCommands::get(c, &k).await.unwrap();
        assert_eq!(v.len(), 64);
    }
}

/// SET then GET of `value` under `{tag}:{i}` for every i of `keys`,
/// through the plugin's async API.
async fn host_set_get(
    store: &CacheStore,
    tag: &str,
    keys: impl Iterator<Item = usize>,
    value: &[u8],
) {
    for i in keys {
        let k = format!("{tag}:{i}");
        store.set(k.clone(), value.to_vec(), None).await.unwrap();
        assert_eq!(store.get(k).await.unwrap().unwrap().len(), 64);
    }
}

/// Redis: 100k SET+GET pairs, sequential and from 64 concurrent tasks,
/// through the redis plugin vs the redis crate's multiplexed async
/// connection. Skipped (with a message) when no server answers.
pub fn group(rounds: usize, out: &mut Vec<Row>) {
    let url =
        std::env::var("BACKPLANE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let rt = runtime(2);
    let direct = match rt.block_on(async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    }) {
        Ok(c) => c,
        Err(e) => {
            println!("skip redis: no server at {url} ({e})");
            return;
        }
    };
    let scratch = bench_dir();
    let ns = backplane_behavior::namespace();
    let storage = open(
        &scratch,
        &["backplane_plugin_redis"],
        &format!(
            "[cache.r]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"bp-bench:{ns}:\"\n[cache.m]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"bp-bench:{ns}:msg:\"\nmax_messages = {MSG_BOUND}\n"
        ),
    );
    let store = storage.cache("r").unwrap();
    let msg_store = storage.cache("m").unwrap();
    let value = vec![b'x'; 64];
    {
        let mut variants = [
            Variant {
                name: "redis crate, multiplexed async",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    rt.block_on(async {
                        let mut c = direct.clone();
                        direct_set_get(&mut c, &ns, "direct", 0..REDIS_OPS, &value).await
                    })
                }),
            },
            Variant {
                name: "host redis, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    let c = store.blocking();
                    for i in 0..REDIS_OPS {
                        let k = format!("b:{i}");
                        c.set(&k, &value, None).unwrap();
                        assert_eq!(c.get(&k).unwrap().unwrap().len(), 64);
                    }
                }),
            },
            Variant {
                name: "host redis, async API",
                reset: Box::new(|| {}),
                run: Box::new(|_| rt.block_on(host_set_get(&store, "a", 0..REDIS_OPS, &value))),
            },
        ];
        interleaved(
            "redis",
            "100k SET+GET, sequential",
            REDIS_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "redis crate, multiplexed async",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    spawn_tasks(&rt, REDIS_TASKS, |t| {
                        let mut c = direct.clone();
                        let (ns, value) = (ns.clone(), value.clone());
                        async move {
                            let keys = (t..REDIS_OPS).step_by(REDIS_TASKS);
                            direct_set_get(&mut c, &ns, "direct64", keys, &value).await
                        }
                    });
                }),
            },
            Variant {
                name: "host redis, async API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    spawn_tasks(&rt, REDIS_TASKS, |t| {
                        let (store, value) = (store.clone(), value.clone());
                        async move {
                            let keys = (t..REDIS_OPS).step_by(REDIS_TASKS);
                            host_set_get(&store, "a64", keys, &value).await
                        }
                    });
                }),
            },
            // The other way futures can cross: each call run blocking on
            // tokio's blocking pool (`run`), what the async API does for
            // calls without a non-blocking form.
            Variant {
                name: "host redis, async API on the blocking pool",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    spawn_tasks(&rt, REDIS_TASKS, |t| {
                        let (store, value) = (store.clone(), value.clone());
                        async move {
                            for i in (t..REDIS_OPS).step_by(REDIS_TASKS) {
                                let k = format!("p64:{i}");
                                let (k2, v) = (k.clone(), value.clone());
                                store.run(move |s| s.set(&k2, &v, None)).await.unwrap();
                                let got = store.run(move |s| s.get(&k)).await.unwrap();
                                assert_eq!(got.unwrap().len(), 64);
                            }
                        }
                    });
                }),
            },
        ];
        interleaved(
            "redis",
            "100k SET+GET, 64 tasks",
            REDIS_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        // 100k messages: 100 channels of 1,000, appended in batches of 100
        // and read back whole. The direct row does what an application
        // without Backplane would: a MULTI of RPUSH (the batch's JSON) and
        // LTRIM to the bound per batch, and LRANGE + JSON decoding to read
        // back. The host's add_messages does more per batch: one Lua
        // script that also refuses taken ids and keeps the id set.
        let batches: Vec<Vec<backplane_host::Message>> = (0..MSG_TOTAL / MSG_BATCH)
            .map(|b| {
                (0..MSG_BATCH)
                    .map(|i| {
                        let mut m = backplane_host::Message::new(
                            "user",
                            format!("message {b}-{i} with some text in it"),
                        );
                        m.id = format!("m{b}-{i}");
                        m.timestamp_ms = 1_700_000_000_000 + (b * MSG_BATCH + i) as i64;
                        m
                    })
                    .collect()
            })
            .collect();
        let channel_of = |b: usize| format!("ch{}", b % MSG_CHANNELS);
        // Every round writes fresh channels (its number in the names).
        let (batches, channel_of, rt, direct, ns, msg_store) =
            (&batches, &channel_of, &rt, &direct, &ns, &msg_store);
        let mut variants = [
            Variant {
                name: "redis crate, multiplexed async",
                reset: Box::new(|| {}),
                run: Box::new({
                    let mut r = 0;
                    move |_| {
                        r += 1;
                        rt.block_on(async {
                            let mut c = direct.clone();
                            for (b, batch) in batches.iter().enumerate() {
                                let list =
                                    format!("bp-bench:{ns}:direct-msg:{r}:{{{}}}", channel_of(b));
                                let json: Vec<Vec<u8>> = batch
                                    .iter()
                                    .map(|m| serde_json::to_vec(m).unwrap())
                                    .collect();
                                let _: () = redis::pipe()
                                    .atomic()
                                    .rpush(&list, json)
                                    .ignore()
                                    .ltrim(&list, -(MSG_BOUND as isize), -1)
                                    .ignore()
                                    .query_async(&mut c)
                                    .await
                                    .unwrap();
                            }
                            for ch in 0..MSG_CHANNELS {
                                let list = format!("bp-bench:{ns}:direct-msg:{r}:{{ch{ch}}}");
                                let raw: Vec<Vec<u8>> =
                                    redis::AsyncCommands::lrange(&mut c, &list, 0, -1)
                                        .await
                                        .unwrap();
                                let ms: Vec<backplane_host::Message> = raw
                                    .iter()
                                    .map(|r| serde_json::from_slice(r).unwrap())
                                    .collect();
                                assert_eq!(ms.len(), MSG_BOUND);
                            }
                        })
                    }
                }),
            },
            Variant {
                name: "host redis, blocking API",
                reset: Box::new(|| {}),
                run: Box::new({
                    let mut r = 0;
                    move |_| {
                        r += 1;
                        let c = msg_store.blocking();
                        for (b, batch) in batches.iter().enumerate() {
                            c.add_messages(&format!("b{r}:{}", channel_of(b)), batch)
                                .unwrap();
                        }
                        for ch in 0..MSG_CHANNELS {
                            let ms = c.recent(&format!("b{r}:ch{ch}"), MSG_BOUND, None).unwrap();
                            assert_eq!(ms.len(), MSG_BOUND);
                        }
                    }
                }),
            },
            Variant {
                name: "host redis, async API",
                reset: Box::new(|| {}),
                run: Box::new({
                    let mut r = 0;
                    move |_| {
                        r += 1;
                        rt.block_on(async {
                            for (b, batch) in batches.iter().enumerate() {
                                msg_store
                                    .add_messages(format!("a{r}:{}", channel_of(b)), batch.clone())
                                    .await
                                    .unwrap();
                            }
                            for ch in 0..MSG_CHANNELS {
                                let ms = msg_store
                                    .recent(format!("a{r}:ch{ch}"), MSG_BOUND, None)
                                    .await
                                    .unwrap();
                                assert_eq!(ms.len(), MSG_BOUND);
                            }
                        })
                    }
                }),
            },
        ];
        interleaved(
            "redis",
            "100k messages, batches of 100, read back",
            MSG_TOTAL,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    // Leave the shared server as it was.
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("bp-bench:{ns}:*"))
        .query(&mut c)
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query(&mut c).unwrap_or(());
    }
}
