//! A one-node cluster for the Kubernetes tests: a real container in the
//! lab's containerd, a real agent in its pod-like sandbox, and the fake API
//! server naming both, its agent pods port-forwarding into an agent's
//! network namespace. The agent checks callers with the fake API server's
//! TokenReview and SubjectAccessReview, reached from its pod's network.

use std::sync::Arc;

use crate::agent::Agent;
use crate::containerd::{Lab, PodSpec};
use crate::kubeapi::{FakeApi, agent_pod, running_pod};

/// The node's name.
pub const NODE: &str = "lab-node";
/// Where the agent pods live, as `kubectl ns install` puts them.
pub const AGENT_NAMESPACE: &str = "kubectl-ns-system";

/// The cluster; everything is torn down on drop.
pub struct OneNode {
    pub api: FakeApi,
    pub agent: Agent,
    /// Pod `default/<pod>`, whose container `app` is real (busybox httpd).
    pub pod: String,
    pub container_id: String,
    _lab: Arc<Lab>,
}

impl OneNode {
    /// The node, pod `default/<pod>` serving httpd on `port`, and the agent;
    /// add agent pods with [`OneNode::add_agent_pod`].
    pub fn start(pod: &str, port: u16) -> OneNode {
        OneNode::start_with_env(pod, port, &[])
    }

    /// [`OneNode::start`] with more environment for the agent.
    pub fn start_with_env(pod: &str, port: u16, env: &[(&str, &str)]) -> OneNode {
        let lab = Lab::shared();
        let p = lab.run_pod(&PodSpec::httpd(pod, port)).unwrap();
        let api = FakeApi::start();
        let mut agent_env = api.agent_env(NODE);
        agent_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let agent = Agent::start_tcp_env(Some(lab.socket.to_str().unwrap()), &agent_env);
        api.serve_in_netns(agent.pid());
        api.add_node(NODE);
        api.add_pod(running_pod("default", pod, NODE, &[("app", &p.container_id)]));
        OneNode {
            api,
            agent,
            pod: pod.to_owned(),
            container_id: p.container_id,
            _lab: lab,
        }
    }

    /// An agent pod on the node whose port-forward reaches the network
    /// namespace of process `pid` (the agent's, or a stand-in's).
    pub fn add_agent_pod(&self, name: &str, pid: i32) {
        self.api.add_pod(agent_pod(name, NODE));
        self.api.forward(AGENT_NAMESPACE, name, pid);
    }
}
