//! `faiss`: the vector group's data (`BENCH_VECTORS`, default 100k × 384,
//! `BENCH_VECTOR_DATA=clustered` as there; 1k top-10 cosine queries) on
//! the faiss plugin at each index type (flat, HNSW, IVF, at the plugin's
//! defaults) against FAISS called directly through `backplane-faiss-sys`:
//! the same FAISS library and index, without the boundary, without
//! records.db, without re-scoring. (The `faiss` crate binds FAISS's C API,
//! whose library Debian's package does not ship.) Measured: the load
//! (upserts in batches of 1,000, IVF's training included), query
//! throughput, p50/p99, recall@10 against the exact top 10, and the
//! plugin's query throughput over the direct index's. Run it with the
//! `vector` group to see qdrant-edge on the same data in the same run.

use crate::harness::{
    batch_records, bench_dir, env_or, host_searches, interleaved, median, median_ratio, open,
    timed_searches, vector_data, Row, Searched, Variant, VectorData, DIM, K, QUERIES, VECTORS,
};
use backplane_faiss_sys::{Index, Metric};
use backplane_host::Distance;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// The index types, as the plugin's `index` option and FAISS's factory
/// description at the plugin's defaults (HNSW m=32, ef_construction=40,
/// ef_search=64; IVF 256 lists, 16 probed).
const KINDS: [(&str, &str); 3] = [("flat", "Flat"), ("hnsw", "HNSW32"), ("ivf", "IVF256,Flat")];

/// FAISS directly: the data (normalised already) under ids 0..n, trained
/// on all of it where the index needs training, added in batches of 1,000.
fn direct_load(description: &str, data: &[Vec<f32>]) -> Index {
    let mut index = Index::new(description, DIM as u32, Metric::InnerProduct).unwrap();
    index.tune(40, 64, 16);
    if !index.is_trained() {
        let flat: Vec<f32> = data.iter().flatten().copied().collect();
        index.train(&flat).unwrap();
    }
    for (b, chunk) in data.chunks(1000).enumerate() {
        let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
        let ids: Vec<i64> = (0..chunk.len()).map(|i| (b * 1000 + i) as i64).collect();
        index.add(&flat, &ids).unwrap();
    }
    index
}

pub fn group(rounds: usize, out: &mut Vec<Row>, table: &mut Vec<String>) {
    let n: usize = env_or("BENCH_VECTORS", VECTORS);
    let (
        VectorData {
            data,
            queries,
            truth,
            ..
        },
        clustered,
    ) = vector_data("faiss", n);
    let scratch = bench_dir();
    let sections: String = KINDS
        .iter()
        .map(|(kind, _)| {
            format!(
                "[vector.{kind}]\nbackend = \"faiss\"\npath = \"{}\"\nindex = \"{kind}\"\n",
                scratch.path(&format!("faiss-{kind}")).display()
            )
        })
        .collect();
    let storage = open(&scratch, &["backplane_plugin_faiss"], &sections);
    let hosts: Vec<_> = KINDS
        .iter()
        .map(|(kind, _)| storage.vector(kind).unwrap())
        .collect();

    // Loads: per kind, the direct index, then the plugin's store.
    let mut load = vec![Duration::ZERO; KINDS.len() * 2];
    let mut directs = Vec::new();
    for (i, (kind, description)) in KINDS.iter().enumerate() {
        eprintln!("faiss: load {n} into FAISS directly, {description}");
        let t = Instant::now();
        directs.push(direct_load(description, &data));
        load[2 * i] = t.elapsed();
        eprintln!("faiss: load {n} into the plugin, index = {kind}");
        let db = hosts[i].blocking();
        db.create_collection("bench", DIM as u32, Distance::Cosine)
            .unwrap();
        let t = Instant::now();
        for (b, chunk) in data.chunks(1000).enumerate() {
            db.upsert("bench", &batch_records(b, chunk)).unwrap();
        }
        load[2 * i + 1] = t.elapsed();
    }

    let chunks = 10;
    let per = QUERIES / chunks;
    let stats: RefCell<Vec<Searched>> =
        RefCell::new((0..KINDS.len() * 2).map(|_| Searched::default()).collect());
    let record = |v: usize, qi: usize, got: &[usize], took: Duration| {
        stats.borrow_mut()[v].record(&truth[qi], got, took);
    };
    let names: Vec<&'static str> = vec![
        "FAISS direct, Flat (exact)",
        "host faiss plugin, index = flat",
        "FAISS direct, HNSW32 (ef_construction 40, ef_search 64)",
        "host faiss plugin, index = hnsw (same settings)",
        "FAISS direct, IVF256,Flat (nprobe 16)",
        "host faiss plugin, index = ivf (same settings)",
    ];
    let mut all = Vec::new();
    for (i, (_, description)) in KINDS.iter().enumerate() {
        let d = &directs[i];
        let host = hosts[i].blocking();
        let record = &record;
        let queries = &queries;
        let mut variants: Vec<Variant<'_>> = vec![
            Variant {
                name: names[2 * i],
                reset: Box::new(|| {}),
                run: Box::new(move |c| {
                    timed_searches(
                        &queries[c * per..(c + 1) * per],
                        c * per,
                        |q| d.search(q, K).unwrap(),
                        |hits| hits.iter().map(|&(_, id)| id as usize).collect(),
                        |qi, got, took| record(2 * i, qi, got, took),
                    );
                }),
            },
            Variant {
                name: names[2 * i + 1],
                reset: Box::new(|| {}),
                run: Box::new(move |c| {
                    host_searches(
                        host,
                        &queries[c * per..(c + 1) * per],
                        c * per,
                        |qi, got, took| record(2 * i + 1, qi, got, took),
                    );
                }),
            },
        ];
        let work: &'static str = match *description {
            "Flat" => "1k top-10 cosine, flat",
            "HNSW32" => "1k top-10 cosine, HNSW",
            _ => "1k top-10 cosine, IVF",
        };
        all.push(interleaved(
            "faiss",
            work,
            QUERIES,
            rounds,
            chunks,
            &mut variants,
            out,
        ));
    }

    let stats = stats.into_inner();
    table.push(format!(
        "\n{n} {} vectors x {DIM}, {QUERIES} queries, top-{K}, cosine; the faiss plugin at its defaults vs FAISS {} directly; {rounds} query round(s)\n",
        if clustered { "clustered" } else { "uniformly random" },
        "1.7 (Debian's libfaiss)"
    ));
    table.push(
        "| variant | load vectors/s | queries/s | p50 | p99 | recall@10 | query throughput vs direct |"
            .into(),
    );
    table.push("|---|---:|---:|---:|---:|---:|---:|".into());
    for (i, totals) in all.iter().enumerate() {
        let ratio = median_ratio(&totals[0], &totals[1]);
        for (side, t) in totals.iter().enumerate() {
            let v = 2 * i + side;
            table.push(format!(
                "| {} | {:.0} | {:.0} | {} | {:.3} | {} |",
                names[v],
                n as f64 / load[v].as_secs_f64(),
                QUERIES as f64 / median(t.clone()).as_secs_f64(),
                stats[v].latency_cells(),
                stats[v].recall(),
                if side == 0 {
                    "1 (baseline)".to_string()
                } else {
                    format!("**{ratio:.3}**")
                }
            ));
        }
    }
}
