//! Redis Cluster: the cluster client built from `nodes`, the masters a
//! whole-database command (`SCAN`, `INFO`) runs on, the cluster's state,
//! and pipelines, which a cluster splits per node.
//!
//! Every other call is a single-slot command or script, which the
//! cluster connection sends to the master of its key's slot.

use crate::client::Conn;
use crate::config::RedisConfig;
use backplane_core::kit::redact::redact_url;
use backplane_core::{Error, Result};
use redis::cluster::ClusterClient;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ConnectionInfo, FromRedisValue, RedisResult};

/// Retries of a cluster command after `MOVED`, `TRYAGAIN` or a lost node
/// before the error is returned (redis-rs waits a little between them).
const CLUSTER_RETRIES: u32 = 2;

/// A master of a cluster, as `host`, `port`.
pub(crate) type Node = (String, u16);

/// The client of the cluster whose seed nodes are `nodes`, each parsed by
/// `parse`, and the nodes' `host:port`s joined by commas. Every node must
/// name database 0.
pub(crate) fn client(
    config: &RedisConfig,
    nodes: &[String],
    parse: impl Fn(&str) -> Result<ConnectionInfo>,
    certs: Option<redis::TlsCertificates>,
) -> Result<(ClusterClient, String)> {
    let infos = nodes
        .iter()
        .map(|u| parse(u))
        .collect::<Result<Vec<ConnectionInfo>>>()?;
    for (url, info) in nodes.iter().zip(&infos) {
        if info.redis_settings().db() != 0 {
            return Err(Error::config(format!(
                "node '{}' names database {}: Redis Cluster has database 0 only; remove the /{} at the end",
                redact_url(url),
                info.redis_settings().db(),
                info.redis_settings().db()
            )));
        }
    }
    let addr = infos
        .iter()
        .map(|i| i.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut builder = ClusterClient::builder(infos);
    if let Some(certs) = certs {
        builder = builder.tls(redis::TlsMode::Secure).certs(certs);
    }
    let client = builder
        .connection_timeout(config.connect_timeout())
        .response_timeout(config.timeout())
        .retries(CLUSTER_RETRIES)
        .build()
        .map_err(|e| Error::config(format!("nodes cannot be used as a Redis Cluster ({e})")))?;
    Ok((client, addr))
}

impl Conn {
    /// The nodes to run a whole-database command on (`SCAN`, `INFO`):
    /// `[None]` for one server, every master of a cluster.
    pub(crate) fn nodes(&mut self) -> RedisResult<Vec<Option<Node>>> {
        let Conn::Cluster(c) = self else {
            return Ok(vec![None]);
        };
        // CLUSTER SLOTS: [[start, end, [host, port, id, …], replicas…], …]
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(c)?;
        let mut masters: Vec<Node> = Vec::new();
        for range in slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let Some(redis::Value::Array(master)) = parts.get(2) else {
                continue;
            };
            let host: Option<String> = master
                .first()
                .and_then(|v| redis::from_redis_value(v.clone()).ok());
            let port: Option<u16> = master
                .get(1)
                .and_then(|v| redis::from_redis_value(v.clone()).ok());
            if let (Some(h), Some(p)) = (host, port) {
                if !masters.contains(&(h.clone(), p)) {
                    masters.push((h, p));
                }
            }
        }
        if masters.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::ClusterConnectionNotFound,
                "CLUSTER SLOTS lists no master: the cluster serves no slot yet",
            )));
        }
        Ok(masters.into_iter().map(Some).collect())
    }

    /// Run `cmd` on `node` (a cluster master), or on the one server.
    pub(crate) fn query_on<T: FromRedisValue>(
        &mut self,
        node: Option<&Node>,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (self, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let v = c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    }),
                )?;
                Ok(redis::from_redis_value(v)?)
            }
            (c, _) => cmd.query(c.like()),
        }
    }

    /// The number of masters and the `cluster_state` (`ok` when every
    /// slot is served) of a cluster, asked of the first of `nodes`; `None`
    /// on a single server.
    pub(crate) fn cluster_state(
        &mut self,
        nodes: &[Option<Node>],
    ) -> RedisResult<Option<(usize, String)>> {
        if let Conn::Single(_) = self {
            return Ok(None);
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("INFO");
        let info: String = self.query_on(nodes[0].as_ref(), &cmd)?;
        let state = crate::codec::info_field(&info, "cluster_state")
            .unwrap_or("unknown")
            .to_string();
        Ok(Some((nodes.len(), state)))
    }

    /// Run `cmds` in one round trip and collect their replies: one
    /// pipeline on a single server (a `MULTI`/`EXEC` transaction when
    /// `atomic`); on a cluster, where the keys hash to different slots, one
    /// pipeline per node, never atomic across them.
    pub(crate) fn pipeline<T: FromRedisValue>(
        &mut self,
        cmds: impl IntoIterator<Item = Cmd>,
        atomic: bool,
    ) -> RedisResult<T> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                if atomic {
                    pipe.atomic();
                }
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
            Conn::Cluster(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
        }
    }
}
