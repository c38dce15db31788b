//! `qdrant`: the same vectors and queries as `vector` on a Qdrant server
//! (`BACKPLANE_QDRANT_URL`; skipped without it), through the qdrant plugin
//! vs qdrant-client called directly: upsert throughput, query throughput,
//! p50/p99, recall@10, once the server has built both indexes.

use crate::harness::{
    batch_records, bench_dir, env_or, host_searches, interleaved, median, median_ratio, open,
    runtime, timed_searches, Rng, Row, Searched, Variant, VectorData, DIM, K, PLUGINS, QUERIES,
    VECTORS,
};
use backplane_host::Distance;
use std::time::{Duration, Instant};

/// The Qdrant server: the same vectors and queries as the `vector` group
/// (uniform data), through the qdrant plugin and through qdrant-client
/// called directly, against one server (`BACKPLANE_QDRANT_URL`; skipped
/// without it). Both load in batches of 1,000 and wait until the server
/// has indexed the collection; then 1k top-10 cosine queries, each reading
/// back the application's id from the payload. The direct variant keeps
/// one vector per point under numeric ids, what a program written for
/// qdrant-client alone would do; the plugin also keeps each cosine vector
/// as given (the `raw` copy its `get` and `scroll` return).
pub fn group(rounds: usize, out: &mut Vec<Row>, table: &mut Vec<String>) {
    use qdrant_client::qdrant::{
        vectors_config, with_payload_selector, CreateCollection, Distance as QDistance,
        PointStruct, QueryPoints, SearchParams, UpsertPoints, VectorParams, VectorParamsMap,
        VectorsConfig, WithPayloadSelector,
    };
    use std::cell::RefCell;
    use std::collections::HashMap;
    let url = match backplane_behavior::qdrant_server() {
        Ok(url) => url,
        Err(why) => {
            eprintln!("qdrant: skipped: {why}");
            return;
        }
    };
    let n: usize = env_or("BENCH_VECTORS", VECTORS);
    let ef: u64 = env_or("BENCH_HNSW_EF", 128);
    let vectors = VectorData::new("qdrant", n, &mut Rng(0xdecaf), Rng::vector);
    let (data, queries, truth) = (&vectors.data, &vectors.queries, &vectors.truth);

    let prefix = format!("bp_bench_{}_", backplane_behavior::namespace());
    let scratch = bench_dir();
    let storage = open(
        &scratch,
        &PLUGINS,
        &format!(
            "[vector.q]\nbackend = \"qdrant\"\nurl = \"{url}\"\ncollection_prefix = \"{prefix}\"\nhnsw_ef = {ef}\n"
        ),
    );
    let store = storage.vector("q").unwrap();
    let host = store.blocking();
    let rt = runtime(1);
    let client = qdrant_client::Qdrant::from_url(&url)
        .skip_compatibility_check()
        .build()
        .unwrap();
    let direct_name = format!("{prefix}direct");
    let host_name = format!("{prefix}bench");

    // Load both, then wait for the server's background index builds.
    eprintln!("qdrant: load {n} through the plugin");
    host.create_collection("bench", DIM as u32, Distance::Cosine)
        .unwrap();
    let t = Instant::now();
    for (b, chunk) in data.chunks(1000).enumerate() {
        host.upsert("bench", &batch_records(b, chunk)).unwrap();
    }
    let host_upsert = t.elapsed();
    eprintln!("qdrant: load {n} through qdrant-client");
    rt.block_on(client.create_collection(CreateCollection {
        collection_name: direct_name.clone(),
        vectors_config: Some(VectorsConfig {
            config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                map: HashMap::from([(
                    "search".to_string(),
                    VectorParams {
                        size: DIM as u64,
                        distance: QDistance::Cosine as i32,
                        ..VectorParams::default()
                    },
                )]),
            })),
        }),
        ..CreateCollection::default()
    }))
    .unwrap();
    let t = Instant::now();
    for (b, chunk) in data.chunks(1000).enumerate() {
        let points: Vec<PointStruct> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = (b * 1000 + i) as u64;
                let payload: HashMap<String, qdrant_client::qdrant::Value> =
                    HashMap::from([("id".to_string(), format!("v{id}").into())]);
                PointStruct::new(
                    id,
                    HashMap::from([("search".to_string(), v.clone())]),
                    payload,
                )
            })
            .collect();
        rt.block_on(client.upsert_points(UpsertPoints {
            collection_name: direct_name.clone(),
            wait: Some(true),
            points,
            ..UpsertPoints::default()
        }))
        .unwrap();
    }
    let direct_upsert = t.elapsed();
    let t = Instant::now();
    for name in [&host_name, &direct_name] {
        loop {
            let info = rt
                .block_on(client.collection_info(name.as_str()))
                .unwrap()
                .result
                .unwrap();
            // Green: no optimisation (index build) pending or running.
            if info.status == qdrant_client::qdrant::CollectionStatus::Green as i32
                && info.indexed_vectors_count.unwrap_or(0) >= n as u64 * 9 / 10
            {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(1800),
                "qdrant: {name} not indexed after 30 min"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let build = t.elapsed();

    let chunks = 10;
    let per = QUERIES / chunks;
    // 0: direct, 1: host.
    let stats = RefCell::new([Searched::default(), Searched::default()]);
    let record = |v: usize, qi: usize, got: &[usize], took: Duration| {
        stats.borrow_mut()[v].record(&truth[qi], got, took);
    };
    // One query through qdrant-client, reading back the application's ids.
    let direct_search = |q: &[f32]| -> Vec<usize> {
        let points = rt
            .block_on(client.query(QueryPoints {
                collection_name: direct_name.clone(),
                query: Some(qdrant_client::qdrant::Query::new_nearest(q.to_vec())),
                using: Some("search".to_string()),
                params: Some(SearchParams {
                    hnsw_ef: Some(ef),
                    ..SearchParams::default()
                }),
                limit: Some(K as u64),
                with_payload: Some(WithPayloadSelector {
                    selector_options: Some(with_payload_selector::SelectorOptions::Enable(true)),
                }),
                ..QueryPoints::default()
            }))
            .unwrap()
            .result;
        points
            .iter()
            .map(|p| match &p.payload["id"].kind {
                Some(qdrant_client::qdrant::value::Kind::StringValue(s)) => s[1..].parse().unwrap(),
                other => panic!("id payload {other:?}"),
            })
            .collect()
    };
    let mut variants = vec![
        Variant {
            name: "qdrant-client direct (gRPC)",
            reset: Box::new(|| {}),
            run: Box::new(|c| {
                timed_searches(
                    &queries[c * per..(c + 1) * per],
                    c * per,
                    direct_search,
                    |got| got,
                    |qi, got, took| record(0, qi, got, took),
                );
            }),
        },
        Variant {
            name: "host qdrant plugin (gRPC)",
            reset: Box::new(|| {}),
            run: Box::new(|c| {
                host_searches(
                    host,
                    &queries[c * per..(c + 1) * per],
                    c * per,
                    |qi, got, took| record(1, qi, got, took),
                );
            }),
        },
    ];
    let work: &'static str = if n == VECTORS {
        "1k top-10 cosine on a Qdrant server, 100k x 384"
    } else {
        "1k top-10 cosine on a Qdrant server, BENCH_VECTORS x 384"
    };
    let totals = interleaved("qdrant", work, QUERIES, rounds, chunks, &mut variants, out);
    drop(variants);
    let server = rt
        .block_on(client.health_check())
        .map(|h| h.version)
        .unwrap_or_default();
    let _ = rt.block_on(client.delete_collection(direct_name.as_str()));
    let _ = host.drop_collection("bench");

    let host_vs_direct = median_ratio(&totals[0], &totals[1]);
    let stats = stats.into_inner();
    table.push(format!(
        "\nQdrant server {server} at {url}: {n} uniformly random vectors x {DIM}, {QUERIES} queries, top-{K}, cosine, hnsw_ef={ef}; index builds waited for: {:.1} s; {rounds} query round(s)\n",
        build.as_secs_f64()
    ));
    table.push(
        "| variant | upsert vectors/s | queries/s | p50 | p99 | recall@10 | query throughput vs direct |".into(),
    );
    table.push("|---|---:|---:|---:|---:|---:|---:|".into());
    for (i, name, upsert) in [
        (0, "qdrant-client direct (gRPC)", direct_upsert),
        (1, "host qdrant plugin (gRPC)", host_upsert),
    ] {
        let s = &stats[i];
        table.push(format!(
            "| {name} | {:.0} | {:.0} | {} | {:.3} | {} |",
            n as f64 / upsert.as_secs_f64(),
            QUERIES as f64 / median(totals[i].clone()).as_secs_f64(),
            s.latency_cells(),
            s.found as f64 / s.latencies.len() as f64 / K as f64,
            if i == 0 {
                "1 (baseline)".to_string()
            } else {
                format!("**{host_vs_direct:.3}**")
            }
        ));
    }
}
