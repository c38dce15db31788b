//! Graph cases.

use crate::{expect_err, Case};
use backplane_host::traits::Graph;
use backplane_host::{Direction, ErrorKind, Filter, GraphStore, NewEdge, NewNode, NodeQuery};
use serde_json::json;

/// Every graph case.
pub fn cases() -> Vec<Case<GraphStore>> {
    vec![
        ("nodes_crud", nodes_crud),
        ("edges_crud", edges_crud),
        ("batches_are_all_or_nothing", batches_are_all_or_nothing),
        ("neighbors", neighbors),
        ("shortest_path", shortest_path),
        ("cascade_delete", cascade_delete),
        ("find_nodes", find_nodes),
        ("export_pages", export_pages),
        ("health", health),
    ]
}

/// a -knows-> b -knows-> c -likes-> d ; a -likes-> d ; e isolated.
fn seeded(g: &dyn Graph) {
    g.create_nodes(&[
        NewNode::new("person", json!({"name": "Ann", "age": 31})).with_id("a"),
        NewNode::new("person", json!({"name": "Ben", "age": 40})).with_id("b"),
        NewNode::new("person", json!({"name": "Cid", "city": "Porto"})).with_id("c"),
        NewNode::new("thing", json!({"name": "Dune", "tags": ["book", "scifi"]})).with_id("d"),
        NewNode::new("thing", json!({"name": "Elm tree"})).with_id("e"),
    ])
    .unwrap();
    g.create_edges(&[
        NewEdge::new("a", "b", "knows"),
        NewEdge::new("b", "c", "knows"),
        NewEdge::new("c", "d", "likes"),
        NewEdge::new("a", "d", "likes").with_properties(json!({"stars": 5})),
    ])
    .unwrap();
}

fn nodes_crud(s: &GraphStore) {
    let g = s.blocking();
    let made = g
        .create_nodes(&[NewNode::new("person", json!({"name": "X", "k": 1}))])
        .unwrap();
    assert_eq!(made.len(), 1);
    let id = made[0].id.clone();
    assert!(!id.is_empty(), "an id is assigned");
    let n = g.get_node(&id).unwrap().unwrap();
    assert_eq!(n.label, "person");
    assert_eq!(n.properties, json!({"name": "X", "k": 1}));
    let n = g
        .update_node(&id, &json!({"k": 2, "name": null, "new": true}))
        .unwrap();
    assert_eq!(
        n.properties,
        json!({"k": 2, "new": true}),
        "update merges; null removes"
    );
    assert_eq!(g.get_node(&id).unwrap().unwrap().properties, n.properties);
    expect_err(g.update_node("missing", &json!({})), ErrorKind::NotFound);
    assert_eq!(g.get_node("missing").unwrap(), None);
    assert!(g.delete_node(&id).unwrap());
    assert!(!g.delete_node(&id).unwrap());
    assert_eq!(g.get_node(&id).unwrap(), None);
}

fn edges_crud(s: &GraphStore) {
    let g = s.blocking();
    seeded(g);
    let e = g
        .create_edges(&[NewEdge::new("e", "a", "near").with_properties(json!({"m": 3}))])
        .unwrap()
        .remove(0);
    assert_eq!(
        (e.from.as_str(), e.to.as_str(), e.edge_type.as_str()),
        ("e", "a", "near")
    );
    let got = g.get_edge(&e.id).unwrap().unwrap();
    assert_eq!(got, e);
    let up = g.update_edge(&e.id, &json!({"m": 4, "x": "y"})).unwrap();
    assert_eq!(up.properties, json!({"m": 4, "x": "y"}));
    expect_err(g.update_edge("missing", &json!({})), ErrorKind::NotFound);
    let out = g.edges_of("a", Direction::Outgoing).unwrap();
    assert_eq!(out.len(), 2);
    let inc = g.edges_of("a", Direction::Incoming).unwrap();
    assert_eq!(inc.len(), 1);
    assert_eq!(g.edges_of("a", Direction::Both).unwrap().len(), 3);
    assert!(g.delete_edge(&e.id).unwrap());
    assert!(!g.delete_edge(&e.id).unwrap());
    assert_eq!(g.get_edge(&e.id).unwrap(), None);
    let e = expect_err(
        g.create_edges(&[NewEdge::new("a", "ghost", "knows")]),
        ErrorKind::NotFound,
    );
    assert!(e.message().contains("ghost"), "{e}");
}

fn batches_are_all_or_nothing(s: &GraphStore) {
    let g = s.blocking();
    seeded(g);
    expect_err(
        g.create_nodes(&[
            NewNode::new("p", json!({})).with_id("new1"),
            NewNode::new("p", json!({})).with_id("a"),
        ]),
        ErrorKind::AlreadyExists,
    );
    assert_eq!(
        g.get_node("new1").unwrap(),
        None,
        "a failed batch writes nothing"
    );
    expect_err(
        g.create_edges(&[
            NewEdge::new("a", "c", "knows"),
            NewEdge::new("a", "nowhere", "knows"),
        ]),
        ErrorKind::NotFound,
    );
    assert_eq!(
        g.edges_of("a", Direction::Outgoing).unwrap().len(),
        2,
        "a failed batch writes no edge"
    );
}

fn neighbors(s: &GraphStore) {
    let g = s.blocking();
    seeded(g);
    let ids = |v: Vec<backplane_host::Neighbor>| -> Vec<(String, u32)> {
        v.into_iter().map(|n| (n.node.id, n.depth)).collect()
    };
    assert_eq!(
        ids(g.neighbors("a", Direction::Outgoing, &[], 1).unwrap()),
        [("b".into(), 1), ("d".into(), 1)]
    );
    assert_eq!(
        ids(g.neighbors("a", Direction::Outgoing, &[], 3).unwrap()),
        [("b".into(), 1), ("d".into(), 1), ("c".into(), 2)],
        "each node once, at its smallest depth, start excluded"
    );
    assert_eq!(
        ids(g
            .neighbors("a", Direction::Outgoing, &["knows".into()], 5)
            .unwrap()),
        [("b".into(), 1), ("c".into(), 2)]
    );
    assert_eq!(
        ids(g.neighbors("d", Direction::Incoming, &[], 1).unwrap()),
        [("a".into(), 1), ("c".into(), 1)]
    );
    assert_eq!(
        ids(g.neighbors("c", Direction::Both, &[], 1).unwrap()),
        [("b".into(), 1), ("d".into(), 1)]
    );
    assert!(g
        .neighbors("e", Direction::Both, &[], 3)
        .unwrap()
        .is_empty());
    expect_err(
        g.neighbors("ghost", Direction::Both, &[], 1),
        ErrorKind::NotFound,
    );
    expect_err(
        g.neighbors("a", Direction::Both, &[], 0),
        ErrorKind::InvalidInput,
    );
    expect_err(
        g.neighbors("a", Direction::Both, &[], 1000),
        ErrorKind::InvalidInput,
    );
}

fn shortest_path(s: &GraphStore) {
    let g = s.blocking();
    seeded(g);
    let p = g.shortest_path("a", "c", 5).unwrap().expect("a reaches c");
    let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(p.edges.len(), 2);
    assert_eq!(
        (p.edges[0].from.as_str(), p.edges[0].to.as_str()),
        ("a", "b")
    );
    let p = g.shortest_path("a", "d", 5).unwrap().unwrap();
    assert_eq!(p.nodes.len(), 2, "the direct edge is shortest");
    assert_eq!(
        g.shortest_path("a", "c", 1).unwrap(),
        None,
        "not within max_depth"
    );
    assert_eq!(
        g.shortest_path("d", "a", 5).unwrap(),
        None,
        "edges are directed"
    );
    assert_eq!(g.shortest_path("a", "e", 5).unwrap(), None);
    let p = g.shortest_path("a", "a", 5).unwrap().unwrap();
    assert_eq!((p.nodes.len(), p.edges.len()), (1, 0));
    expect_err(g.shortest_path("a", "ghost", 3), ErrorKind::NotFound);
}

fn cascade_delete(s: &GraphStore) {
    let g = s.blocking();
    seeded(g);
    let edges_of_b: Vec<String> = g
        .edges_of("b", Direction::Both)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(edges_of_b.len(), 2);
    assert!(g.delete_node("b").unwrap());
    for id in &edges_of_b {
        assert_eq!(
            g.get_edge(id).unwrap(),
            None,
            "edges of a deleted node are deleted"
        );
    }
    assert_eq!(g.edges_of("a", Direction::Outgoing).unwrap().len(), 1);
    assert_eq!(g.shortest_path("a", "c", 5).unwrap(), None);
}

fn find_nodes(s: &GraphStore) {
    let g = s.blocking();
    seeded(g);
    let ids = |q: NodeQuery| -> Vec<String> {
        g.find_nodes(&q)
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect()
    };
    assert_eq!(
        ids(NodeQuery {
            label: Some("thing".into()),
            ..Default::default()
        }),
        ["d", "e"]
    );
    assert_eq!(
        ids(NodeQuery {
            filter: Some(
                Filter::parse(&json!({"must": [{"key": "age", "range": {"gte": 35}}]})).unwrap()
            ),
            ..Default::default()
        }),
        ["b"]
    );
    assert_eq!(
        ids(NodeQuery {
            text: Some("SCIFI".into()),
            ..Default::default()
        }),
        ["d"]
    );
    assert_eq!(
        ids(NodeQuery {
            text: Some("e".into()),
            label: Some("person".into()),
            ..Default::default()
        }),
        ["b"]
    );
    assert_eq!(
        ids(NodeQuery {
            limit: 2,
            ..Default::default()
        })
        .len(),
        2
    );
    assert!(ids(NodeQuery {
        label: Some("nothing".into()),
        ..Default::default()
    })
    .is_empty());
}

fn export_pages(s: &GraphStore) {
    let g = s.blocking();
    seeded(g);
    let mut nodes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = g.export_nodes(cursor.as_deref(), 2).unwrap();
        assert!(p.items.len() <= 2);
        nodes.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let mut edges = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = g.export_edges(cursor.as_deref(), 3).unwrap();
        edges.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(edges.len(), 4);
    assert!(edges.iter().any(|e| e.properties["stars"] == 5));
}

fn health(s: &GraphStore) {
    assert!(s.blocking().health().unwrap().healthy);
}
