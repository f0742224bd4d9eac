//! The clients: they send their requests (and a joiner its application) to the current members,
//! gather replies into certificates, and take honest NACKs as answers.

use super::*;

impl Cluster {
    /// Clients whose time to (re)send has come send to every member.
    pub(super) fn clients_send(&mut self) {
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            let due = client.next_send <= self.now && !client.done();
            if !due {
                continue;
            }
            if self.clients[c].certificate.is_some() {
                self.clients[c].repeated = true;
            }
            self.clients[c].next_send = self.now + CLIENT_RESEND;
            let from = Peer::Client(self.clients[c].addr);
            let bytes = schema::encode(&Message::Request(self.clients[c].request.clone()));
            let current = self.current_list();
            // A client limited to some members reaches them first; its resends go to all, so
            // it can gather a quorum of replies.
            let targets: Vec<MemberKey> = match self.clients[c].send_to.take() {
                Some(indexes) => indexes.iter().map(|&i| self.genesis[i]).collect(),
                None => current.clone(),
            };
            for member in targets {
                self.post(from, Peer::Member(member), bytes.clone());
            }
            if let Some(application) = self.application(c) {
                let bytes = schema::encode(&Message::Apply(application));
                for member in current {
                    self.post(from, Peer::Member(member), bytes.clone());
                }
            }
        }
    }

    pub(super) fn client_receives(&mut self, c: usize, bytes: &[u8]) {
        let reply = match schema::decode(bytes) {
            Ok(Message::Reply(reply)) => reply,
            Ok(Message::Nack(nack)) => return self.client_nacked(c, nack),
            _ => panic!("a client got something other than a reply or a NACK"),
        };
        let honest = self.is_honest(reply.body.member) && reply.verify(&self.network);
        let client = &mut self.clients[c];
        if honest {
            client
                .answered_by
                .insert((reply.body.member, reply.body.members));
        }
        assert_eq!(
            reply.body.digest,
            client.request.digest(),
            "a reply names another request"
        );
        if let Some(certificate) = &client.certificate {
            // The repeat: an honest member's signed reply carries the same id.
            if honest {
                assert_eq!(
                    reply.body.node_id, certificate.node_id,
                    "a repeated request got another id"
                );
            }
            return;
        }
        if client.replies.contains(&reply) {
            // The same signed reply again (a repeat answered): nothing new to gather.
            return;
        }
        if client.replies.len() >= 64 {
            client.replies.remove(0);
        }
        client.replies.push(reply);
        // A client verifies against the current member list (trust::MemberListChain).
        let members = self.current_list();
        let client = &mut self.clients[c];
        if let Some(certificate) = certificate::gather(&self.network, &members, &client.replies) {
            certificate::verify(&self.network, &members, &certificate.replies)
                .expect("a gathered certificate verifies");
            client.certificate = Some(certificate);
            client.roster = members;
            client.next_send = self.now + CLIENT_RESEND;
        }
    }

    /// The member list of the honest member furthest along: what a client holding the chain
    /// trusts now.
    pub(crate) fn current_list(&self) -> Vec<MemberKey> {
        self.honest()
            .max_by_key(|m| m.height())
            .map_or_else(|| self.genesis.clone(), |m| m.members().to_vec())
    }

    /// The joiner's application, once its client holds a certificate and until it is a member.
    pub(super) fn application(&self, c: usize) -> Option<Signed<Application>> {
        let client = &self.clients[c];
        if !self.applying(client) {
            return None;
        }
        let index = self
            .members
            .iter()
            .position(|m| m.0 == client.request.key)?;
        let body = Application {
            request: client.request.clone(),
            certificate: client.certificate.as_ref()?.replies.clone(),
        };
        Some(sign(&self.keys[index], &self.network, body))
    }

    /// True for the joiner's client while its node holds a certificate and is not yet in the
    /// current list.
    pub(super) fn applying(&self, client: &Client) -> bool {
        let key = MemberKey(client.request.key);
        client.certificate.is_some()
            && self.members.contains(&key)
            && !self.genesis.contains(&key)
            && !self.current_list().contains(&key)
    }

    pub(super) fn client_nacked(&mut self, c: usize, nack: Signed<Nack>) {
        let honest = self.is_honest(nack.body.member) && nack.verify(&self.network);
        let client = &mut self.clients[c];
        assert_eq!(
            nack.body.digest,
            client.request.digest(),
            "a NACK names another request"
        );
        if honest {
            assert!(
                client.certificate.is_none(),
                "an honest member refused a request that was issued"
            );
            client.nacks.push(nack);
        }
    }
}

impl Client {
    /// Holds a certificate and has repeated its request, or an honest member refused it.
    pub(crate) fn done(&self) -> bool {
        (self.certificate.is_some() && self.repeated) || !self.nacks.is_empty()
    }
}
