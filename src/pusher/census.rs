//! Who is on an app's channels, counted over every node: what the HTTP API's channel
//! and user queries answer, and where `terminate_connections` reaches.
//!
//! A [`Question`] is answered by each node from its own clients ([`Census`]: each
//! channel's subscriptions, and on a presence channel its users); the answers are then
//! added up ([`Census::merge`]): subscriptions summed, users counted once however many
//! nodes hold a connection of theirs. A single node asks only itself, by the same path;
//! with `--cluster` the question goes to every node through the backplane
//! ([`crate::broker::Cluster`]), and nodes that took it but did not answer in time are
//! said in the reply (`X-Herald-Nodes-Missing`) and on /metrics, never made up.

use super::apps::{App, Apps};
use super::protocol;
use crate::broker::{Answerer, Broker};
use crate::laravel::ChannelKind;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the HTTP API asks every node about one app.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub enum Question {
    /// The occupied channels whose names start with the prefix.
    Channels { app: String, prefix: String },
    /// These channels, occupied or not.
    Named { app: String, names: Vec<String> },
    /// Close this user's connections (4009), then answer nothing.
    Terminate { app: String, user: String },
}

/// One channel as counted: subscriptions, and the users of a presence channel.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Counted {
    pub subscriptions: usize,
    pub users: BTreeSet<String>,
}

/// Each channel asked about, by name.
#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub channels: BTreeMap<String, Counted>,
}

impl Census {
    /// This node's answer to `question` about `app` (terminating connections if asked).
    fn of(app: &App, question: &Question) -> Census {
        let count = |name: &str| Counted {
            subscriptions: app.channels.subscriptions(name),
            users: match ChannelKind::of(name) {
                ChannelKind::Presence => app.channels.users(name).into_iter().collect(),
                _ => BTreeSet::new(),
            },
        };
        let channels = match question {
            Question::Channels { prefix, .. } => app
                .channels
                .occupied(prefix)
                .into_iter()
                .map(|name| {
                    let counted = count(&name);
                    (name, counted)
                })
                .collect(),
            Question::Named { names, .. } => names.iter().map(|n| (n.clone(), count(n))).collect(),
            Question::Terminate { user, .. } => {
                let frames = [protocol::error(4009, "You got disconnected by the app.")];
                for conn in app.connections_of(user) {
                    conn.terminate(&frames);
                }
                BTreeMap::new()
            }
        };
        Census { channels }
    }

    /// The nodes' answers added up.
    pub fn merge(answers: impl IntoIterator<Item = Census>) -> Census {
        let mut all = Census::default();
        for answer in answers {
            for (name, c) in answer.channels {
                let into = all.channels.entry(name).or_default();
                into.subscriptions += c.subscriptions;
                into.users.extend(c.users);
            }
        }
        all
    }
}

/// Ask `question` of every node (this one alone without a cluster): the census, and how
/// many nodes took the question but did not answer in time. Err when the cluster could
/// not be asked at all.
pub async fn ask(
    broker: &dyn Broker,
    app: &App,
    question: Question,
) -> Result<(Census, usize), String> {
    let Some(cluster) = broker.cluster() else {
        return Ok((Census::of(app, &question), 0));
    };
    let body = serde_json::to_vec(&question).expect("a question serializes");
    let answers = cluster.ask(body.into()).await.map_err(|_| {
        "the other herald nodes cannot be asked: the backplane (Redis) is unreachable".to_string()
    })?;
    let read: Vec<Census> = answers
        .answers
        .iter()
        .filter_map(|a| serde_json::from_slice(a).ok())
        .collect();
    let unreadable = answers.answers.len() - read.len();
    Ok((Census::merge(read), answers.missing + unreadable))
}

impl Answerer for Apps {
    /// Another node's question (or this one's): answered from this node's clients; an
    /// app this node does not serve, or a question it cannot read, gets an empty census.
    fn answer(&self, question: &[u8]) -> Bytes {
        let census = match serde_json::from_slice::<Question>(question) {
            Ok(q) => {
                let id = match &q {
                    Question::Channels { app, .. }
                    | Question::Named { app, .. }
                    | Question::Terminate { app, .. } => app,
                };
                self.by_id(id)
                    .map(|app| Census::of(&app, &q))
                    .unwrap_or_default()
            }
            Err(_) => Census::default(),
        };
        serde_json::to_vec(&census)
            .expect("a census serializes")
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(subscriptions: usize, users: &[&str]) -> Counted {
        Counted {
            subscriptions,
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn merging_sums_subscriptions_and_counts_a_user_on_two_nodes_once() {
        let a = Census {
            channels: [
                ("presence-room".to_string(), counted(2, &["1", "2"])),
                ("orders".to_string(), counted(1, &[])),
            ]
            .into(),
        };
        let b = Census {
            channels: [("presence-room".to_string(), counted(1, &["2", "3"]))].into(),
        };
        let all = Census::merge([a, b]);
        assert_eq!(all.channels["presence-room"], counted(3, &["1", "2", "3"]));
        assert_eq!(all.channels["orders"], counted(1, &[]));
    }

    #[test]
    fn questions_read_back_as_they_were_asked() {
        for q in [
            Question::Channels {
                app: "1".into(),
                prefix: "presence-".into(),
            },
            Question::Named {
                app: "1".into(),
                names: vec!["a".into(), "b".into()],
            },
            Question::Terminate {
                app: "1".into(),
                user: "7".into(),
            },
        ] {
            let text = serde_json::to_vec(&q).unwrap();
            assert_eq!(serde_json::from_slice::<Question>(&text).unwrap(), q);
        }
    }
}
