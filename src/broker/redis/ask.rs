//! Questions one node asks every node of the cluster (itself included), and their answers:
//! how a query about clients (the Pusher HTTP API's channels, users and
//! `terminate_connections`) speaks for the whole cluster, as socket.io's Redis adapter
//! asks its peers (`fetchSockets`, `serverSideEmit`).
//!
//! A question is published on [`ASK`], which every node's first subscriber connection
//! holds, so `PUBLISH`'s reply says how many nodes took it: that many answers are
//! awaited, each published by its node on the asker's own answer channel
//! (`herald:answer:<node>`), for at most [`DEADLINE`]; those that do not come (a node that
//! died meanwhile) are counted as missing, never made up. Each node answers at once, from
//! its own registries ([`Answerer`]). A question whose body begins with a registered topic
//! (the dashboard's) goes to that topic's answerer, any other to the node's answerer.
//!
//! Messages: a question is the asker's node id, the question's number and its body; an
//! answer is the number, the answering node's id and its body. A question published
//! twice (its first reply lost) is answered twice: the asker keeps one answer per node.

use super::super::Answerer;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The channel questions are asked on.
pub const ASK: &str = "herald:ask";
/// How long an asker waits for the answers.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// This node's open questions and whoever answers the others'.
pub struct Questions {
    node: u64,
    /// Where the answers to this node's questions come: `herald:answer:<node>`.
    answers_to: String,
    open: Mutex<HashMap<u64, mpsc::UnboundedSender<(u64, Bytes)>>>,
    next: AtomicU64,
    answerer: OnceLock<Arc<dyn Answerer>>,
    /// Answerers of the questions beginning with their topic, checked first.
    topics: parking_lot::RwLock<Vec<Topic>>,
}

/// A topic (how its questions begin) and who answers them.
type Topic = (&'static [u8], Arc<dyn Answerer>);

/// What to publish in answer to a question: (channel, message).
pub type Answer = (Bytes, Bytes);

impl Questions {
    pub fn new(node: u64) -> Questions {
        Questions {
            node,
            answers_to: format!("herald:answer:{node:x}"),
            open: Mutex::default(),
            next: AtomicU64::new(1),
            answerer: OnceLock::new(),
            topics: Default::default(),
        }
    }

    /// The channels the node's first connection holds for questions and answers.
    pub fn channels(&self) -> [Bytes; 2] {
        [
            Bytes::from_static(ASK.as_bytes()),
            Bytes::copy_from_slice(self.answers_to.as_bytes()),
        ]
    }

    /// Who answers the cluster's questions on this node; the first call wins.
    pub fn answer_with(&self, answerer: Arc<dyn Answerer>) {
        let _ = self.answerer.set(answerer);
    }

    /// Who answers the questions beginning with `topic`; the first call per topic wins.
    pub fn answer_topic(&self, topic: &'static [u8], answerer: Arc<dyn Answerer>) {
        let mut topics = self.topics.write();
        if !topics.iter().any(|(t, _)| *t == topic) {
            topics.push((topic, answerer));
        }
    }

    /// The answer to the question `body`: from its topic's answerer, else the node's.
    fn answer(&self, body: &[u8]) -> Bytes {
        let topical = (self.topics.read().iter())
            .find(|(t, _)| body.starts_with(t))
            .map(|(_, a)| a.clone());
        match topical.or_else(|| self.answerer.get().cloned()) {
            Some(a) => a.answer(body),
            None => Bytes::new(),
        }
    }

    /// A question numbered `id` with `body`, as published; and where its answers will
    /// arrive, each with its node's id (until [`Questions::close`]).
    pub fn open(&self, body: &[u8]) -> (u64, Bytes, mpsc::UnboundedReceiver<(u64, Bytes)>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.open.lock().insert(id, tx);
        let mut m = BytesMut::with_capacity(16 + body.len());
        m.put_u64(self.node);
        m.put_u64(id);
        m.extend_from_slice(body);
        (id, m.freeze(), rx)
    }

    /// No more answers to question `id` are awaited.
    pub fn close(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    /// A message on `channel`, if it is a question or an answer: a question is answered
    /// (what to publish is returned), an answer handed to its asker. None for anything
    /// else, and for what cannot be read.
    pub fn receive(&self, channel: &str, payload: &[u8]) -> Option<Option<Answer>> {
        if channel == ASK {
            let mut m = payload;
            if m.remaining() < 16 {
                return Some(None);
            }
            let (asker, id) = (m.get_u64(), m.get_u64());
            let answer = self.answer(m);
            let mut reply = BytesMut::with_capacity(16 + answer.len());
            reply.put_u64(id);
            reply.put_u64(self.node);
            reply.extend_from_slice(&answer);
            let to = Bytes::from(format!("herald:answer:{asker:x}"));
            return Some(Some((to, reply.freeze())));
        }
        if channel == self.answers_to {
            let mut m = payload;
            if m.remaining() >= 16 {
                let (id, node) = (m.get_u64(), m.get_u64());
                if let Some(asker) = self.open.lock().get(&id) {
                    let _ = asker.send((node, Bytes::copy_from_slice(m)));
                }
            }
            return Some(None);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Answerer for Echo {
        fn answer(&self, question: &[u8]) -> Bytes {
            [b"re: ", question].concat().into()
        }
    }

    #[tokio::test]
    async fn a_question_is_answered_on_the_askers_channel_and_reaches_it_once_open() {
        let asker = Questions::new(0xa);
        let other = Questions::new(0xb);
        other.answer_with(Arc::new(Echo));
        let (id, question, mut answers) = asker.open(b"who?");

        let (to, reply) = other.receive(ASK, &question).unwrap().unwrap();
        assert_eq!(&to[..], b"herald:answer:a");
        assert_eq!(asker.receive("herald:answer:a", &reply), Some(None));
        let (node, answer) = answers.recv().await.unwrap();
        assert_eq!((node, &answer[..]), (0xb, &b"re: who?"[..]));

        asker.close(id);
        asker.receive("herald:answer:a", &reply);
        assert!(
            answers.recv().await.is_none(),
            "closed: nothing more arrives"
        );
        struct Topical;
        impl Answerer for Topical {
            fn answer(&self, _question: &[u8]) -> Bytes {
                Bytes::from_static(b"topical")
            }
        }
        other.answer_topic(b"dash:", Arc::new(Topical));
        let (_, topical, mut answers) = asker.open(b"dash:nodes");
        let (_, reply) = other.receive(ASK, &topical).unwrap().unwrap();
        asker.receive("herald:answer:a", &reply);
        assert_eq!(&answers.recv().await.unwrap().1[..], b"topical");
        let (_, plain, mut answers) = asker.open(b"dash");
        let (_, reply) = other.receive(ASK, &plain).unwrap().unwrap();
        asker.receive("herald:answer:a", &reply);
        assert_eq!(
            &answers.recv().await.unwrap().1[..],
            b"re: dash",
            "not the topic"
        );
        assert_eq!(
            asker.receive("herald:d:orders", b"x"),
            None,
            "not a question"
        );
    }
}
