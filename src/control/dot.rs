//! The mesh as a Graphviz graph, from the answers to a trace.

use std::collections::{BTreeMap, BTreeSet};

use super::Trace;

/// Renders the nodes and links a trace found as an undirected DOT graph:
/// one node per MAC, one edge per link. Nodes that did not answer (0.4
/// nodes, or nodes the request could not reach) are drawn dashed; the node
/// that asked is drawn bold.
pub fn render(t: &Trace) -> String {
    let answered: BTreeMap<&str, bool> =
        t.nodes.iter().map(|n| (n.mac.as_str(), n.origin)).collect();
    let mut all: BTreeSet<&str> = answered.keys().copied().collect();
    let mut edges: BTreeSet<(&str, &str)> = BTreeSet::new();
    for n in &t.nodes {
        for l in &n.links {
            all.insert(l.as_str());
            let (a, b) = if n.mac.as_str() < l.as_str() {
                (n.mac.as_str(), l.as_str())
            } else {
                (l.as_str(), n.mac.as_str())
            };
            edges.insert((a, b));
        }
    }
    let mut s = String::from("graph invpn {\n  graph [overlap=false, splines=true];\n  node [shape=box, fontname=\"monospace\"];\n");
    for m in &all {
        let style = match answered.get(m) {
            Some(true) => "style=bold",
            Some(false) => "style=solid",
            None => "style=dashed",
        };
        s.push_str(&format!("  \"{m}\" [label=\"{m}\", {style}];\n"));
    }
    for (a, b) in &edges {
        s.push_str(&format!("  \"{a}\" -- \"{b}\";\n"));
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::TraceNode;

    fn node(mac: &str, origin: bool, links: &[&str]) -> TraceNode {
        TraceNode {
            mac: mac.into(),
            origin,
            links: links.iter().map(|s| s.to_string()).collect(),
            routes: vec![],
            request_path: vec![],
            answer_path: vec![],
        }
    }

    #[test]
    fn one_edge_per_link_and_silent_nodes_dashed() {
        let t = Trace {
            request_id: 1,
            waited_ms: 10,
            nodes: vec![
                node("a", true, &["b", "c"]),
                node("b", false, &["a", "c"]),
                node("c", false, &["a", "b", "d"]),
            ],
        };
        let d = render(&t);
        assert_eq!(d.matches(" -- ").count(), 4, "{d}");
        assert!(d.contains("\"a\" -- \"b\";") && d.contains("\"c\" -- \"d\";"));
        assert!(d.contains("\"a\" [label=\"a\", style=bold]"));
        assert!(d.contains("\"d\" [label=\"d\", style=dashed]"));
        assert!(d.starts_with("graph invpn {") && d.ends_with("}\n"));
    }
}
