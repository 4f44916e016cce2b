package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// Fixture identities the Jest side asserts on.
const (
	NodeA     = "5f1c2a9e-0000-4000-8000-00000000000a"
	NodeB     = "5f1c2a9e-0000-4000-8000-00000000000b"
	OldAlloc  = "a11c0000-0000-4000-8000-000000000001"
	NewAlloc  = "a11c0000-0000-4000-8000-000000000002"
	JobID     = "example-counter"
	NomadAuth = "nomad-contract-token"
)

// NomadStandIn answers the endpoints of common/nomad-api with marshalled nomad/api structs.
type NomadStandIn struct {
	rec *Recorder
	mu  sync.Mutex
	// changed is closed and replaced whenever index moves, waking blocking queries.
	changed     chan struct{}
	index       uint64
	nodes       map[string]*nomad.Node
	allocs      map[string]*nomad.Allocation
	dynamicMeta map[string]*string
	// streamIndexes records the ?index= of each event stream connection, for the resume assertion.
	streamIndexes []string
	streams       int
	schedConfig   nomad.SchedulerConfiguration
}

func NewNomadStandIn(rec *Recorder) *NomadStandIn {
	n := &NomadStandIn{rec: rec, changed: make(chan struct{}), index: 100, dynamicMeta: map[string]*string{}}
	n.nodes = map[string]*nomad.Node{NodeA: fixtureNode(NodeA, "client-a"), NodeB: fixtureNode(NodeB, "client-b")}
	n.allocs = map[string]*nomad.Allocation{OldAlloc: fixtureOldAlloc(), NewAlloc: fixtureNewAlloc()}
	// A cluster set up as forecaster/README says: service-job preemption on (Nomad's own default is off).
	n.schedConfig = nomad.SchedulerConfiguration{
		SchedulerAlgorithm: nomad.SchedulerAlgorithmBinpack,
		PreemptionConfig:   nomad.PreemptionConfig{SystemSchedulerEnabled: true, ServiceSchedulerEnabled: true},
		CreateIndex:        10, ModifyIndex: 12,
	}
	return n
}

func (n *NomadStandIn) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", n.listNodes)
	mux.HandleFunc("GET /v1/node/{id}", n.getNode)
	mux.HandleFunc("GET /v1/node/{id}/allocations", n.nodeAllocations)
	mux.HandleFunc("/v1/node/{id}/drain", n.drain)
	mux.HandleFunc("/v1/node/{id}/eligibility", n.eligibility)
	mux.HandleFunc("GET /v1/allocations", n.listAllocs)
	mux.HandleFunc("GET /v1/allocation/{id}", n.getAlloc)
	mux.HandleFunc("/v1/allocation/{id}/stop", n.stopAlloc)
	mux.HandleFunc("/v1/jobs/parse", n.parseJob)
	mux.HandleFunc("/v1/jobs", n.registerJob)
	mux.HandleFunc("DELETE /v1/job/{id}", n.deregisterJob)
	mux.HandleFunc("/v1/client/metadata", n.nodeMeta)
	mux.HandleFunc("GET /v1/event/stream", n.eventStream)
	mux.HandleFunc("/v1/operator/scheduler/configuration", n.schedulerConfig)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n.rec.fail("nomad", r, "no such endpoint or method on Nomad's API")
		http.Error(w, "Invalid method or path", http.StatusNotFound)
	})
	return n.wrap(mux)
}

// wrap records every request and checks what all endpoints share: the token header.
func (n *NomadStandIn) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytesReader(body))
		token := r.Header.Get("X-Nomad-Token")
		n.rec.record(Request{"nomad", r.Method, r.URL.Path, r.URL.RawQuery, token, string(body)})
		if token != NomadAuth {
			n.rec.fail("nomad", r, "X-Nomad-Token is %q, want the configured token", token)
			http.Error(w, "Permission denied", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (n *NomadStandIn) bump() {
	n.index++
	close(n.changed)
	n.changed = make(chan struct{})
}

// block implements Nomad's blocking query: ?index=N waits until the state index exceeds N or ?wait= passes.
func (n *NomadStandIn) block(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	if !q.Has("index") {
		if q.Has("wait") {
			n.rec.fail("nomad", r, "wait without index")
		}
		return true
	}
	min, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil {
		n.rec.fail("nomad", r, "index %q is not an unsigned integer", q.Get("index"))
		http.Error(w, "Invalid index", http.StatusBadRequest)
		return false
	}
	wait := 5 * time.Minute
	if q.Has("wait") {
		if wait, err = time.ParseDuration(q.Get("wait")); err != nil {
			n.rec.fail("nomad", r, "wait %q is not a Go duration", q.Get("wait"))
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return false
		}
	}
	deadline := time.After(wait)
	for {
		n.mu.Lock()
		idx, ch := n.index, n.changed
		n.mu.Unlock()
		if idx > min {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return true
		case <-r.Context().Done():
			return false
		}
	}
}

func (n *NomadStandIn) answer(w http.ResponseWriter, v any) {
	n.mu.Lock()
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(n.index, 10))
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

func (n *NomadStandIn) methods(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for _, m := range allowed {
		if r.Method == m {
			return true
		}
	}
	n.rec.fail("nomad", r, "method %s not accepted by Nomad here (accepts %v)", r.Method, allowed)
	http.Error(w, "Invalid method", http.StatusMethodNotAllowed)
	return false
}

func (n *NomadStandIn) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, _ := io.ReadAll(r.Body)
	if err := DecodeStrict(body, v); err != nil {
		n.rec.fail("nomad", r, "body does not decode strictly into %T: %v", v, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (n *NomadStandIn) listNodes(w http.ResponseWriter, r *http.Request) {
	if !n.block(w, r) {
		return
	}
	n.mu.Lock()
	out := []*nomad.NodeListStub{stub(n.nodes[NodeA]), stub(n.nodes[NodeB])}
	n.mu.Unlock()
	n.answer(w, out)
}

func (n *NomadStandIn) getNode(w http.ResponseWriter, r *http.Request) {
	if !n.block(w, r) {
		return
	}
	n.mu.Lock()
	node, ok := n.nodes[r.PathValue("id")]
	n.mu.Unlock()
	if !ok {
		http.Error(w, "node not found", http.StatusNotFound)
		return
	}
	n.answer(w, node)
}

func (n *NomadStandIn) nodeAllocations(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	var out []*nomad.Allocation
	for _, id := range []string{OldAlloc, NewAlloc} {
		if a := n.allocs[id]; a.NodeID == r.PathValue("id") {
			out = append(out, a)
		}
	}
	n.mu.Unlock()
	n.answer(w, out)
}

func (n *NomadStandIn) drain(w http.ResponseWriter, r *http.Request) {
	if !n.methods(w, r, http.MethodPut, http.MethodPost) {
		return
	}
	var req nomad.NodeUpdateDrainRequest
	if !n.decode(w, r, &req) {
		return
	}
	id := r.PathValue("id")
	if req.NodeID != id {
		n.rec.fail("nomad", r, "NodeID %q differs from the path's %q", req.NodeID, id)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	node, ok := n.nodes[id]
	if !ok {
		http.Error(w, "node not found", http.StatusNotFound)
		return
	}
	now := time.Now().UTC()
	if req.DrainSpec == nil {
		node.DrainStrategy = nil
		node.Drain = false
		if req.MarkEligible {
			node.SchedulingEligibility = nomad.NodeSchedulingEligible
		}
		node.LastDrain = &nomad.DrainMetadata{StartedAt: now, UpdatedAt: now, Status: nomad.DrainStatusCanceled, Meta: req.Meta}
	} else {
		node.DrainStrategy = &nomad.DrainStrategy{DrainSpec: *req.DrainSpec, StartedAt: now, ForceDeadline: now.Add(req.DrainSpec.Deadline)}
		node.Drain = true
		node.SchedulingEligibility = nomad.NodeSchedulingIneligible
		node.LastDrain = &nomad.DrainMetadata{StartedAt: now, UpdatedAt: now, Status: nomad.DrainStatusDraining, Meta: req.Meta}
	}
	n.bump()
	node.ModifyIndex = n.index
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(n.index, 10))
	writeJSON(w, http.StatusOK, nomad.NodeDrainUpdateResponse{NodeModifyIndex: n.index, EvalIDs: []string{"e0000000-0000-4000-8000-000000000001"}, EvalCreateIndex: n.index})
}

func (n *NomadStandIn) eligibility(w http.ResponseWriter, r *http.Request) {
	if !n.methods(w, r, http.MethodPut, http.MethodPost) {
		return
	}
	var req nomad.NodeUpdateEligibilityRequest
	if !n.decode(w, r, &req) {
		return
	}
	if req.NodeID != r.PathValue("id") {
		n.rec.fail("nomad", r, "NodeID %q differs from the path", req.NodeID)
	}
	if req.Eligibility != nomad.NodeSchedulingEligible && req.Eligibility != nomad.NodeSchedulingIneligible {
		n.rec.fail("nomad", r, "Eligibility %q is neither eligible nor ineligible", req.Eligibility)
		http.Error(w, "invalid scheduling eligibility", http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	node := n.nodes[req.NodeID]
	if node == nil {
		http.Error(w, "node not found", http.StatusNotFound)
		return
	}
	// Nomad refuses to make a draining node eligible (nomad/node_endpoint.go UpdateEligibility).
	if node.DrainStrategy != nil && req.Eligibility == nomad.NodeSchedulingEligible {
		http.Error(w, "can not set node's scheduling eligibility to eligible while it is draining", http.StatusBadRequest)
		return
	}
	node.SchedulingEligibility = req.Eligibility
	n.bump()
	writeJSON(w, http.StatusOK, nomad.NodeEligibilityUpdateResponse{NodeModifyIndex: n.index, EvalCreateIndex: n.index})
}

func (n *NomadStandIn) listAllocs(w http.ResponseWriter, r *http.Request) {
	if ns := r.URL.Query().Get("namespace"); ns != "default" && ns != "*" {
		n.rec.fail("nomad", r, "namespace %q, want default or *", ns)
	}
	if ts := r.URL.Query().Get("task_states"); ts != "" && ts != "true" && ts != "false" {
		n.rec.fail("nomad", r, "task_states %q is not a bool", ts)
	}
	n.mu.Lock()
	out := []*nomad.AllocationListStub{n.allocs[OldAlloc].Stub(), n.allocs[NewAlloc].Stub()}
	n.mu.Unlock()
	n.answer(w, out)
}

func (n *NomadStandIn) getAlloc(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	a, ok := n.allocs[r.PathValue("id")]
	n.mu.Unlock()
	if !ok {
		http.Error(w, "alloc not found", http.StatusNotFound)
		return
	}
	n.answer(w, a)
}

func (n *NomadStandIn) stopAlloc(w http.ResponseWriter, r *http.Request) {
	if !n.methods(w, r, http.MethodPut, http.MethodPost) {
		return
	}
	if body, _ := io.ReadAll(r.Body); len(body) != 0 {
		n.rec.fail("nomad", r, "stop takes no body, got %q", body)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.allocs[r.PathValue("id")]
	if !ok {
		http.Error(w, "alloc not found", http.StatusNotFound)
		return
	}
	a.DesiredTransition.Migrate = pointer(true)
	n.bump()
	writeJSON(w, http.StatusOK, nomad.AllocStopResponse{EvalID: "e0000000-0000-4000-8000-000000000002"})
}

func (n *NomadStandIn) parseJob(w http.ResponseWriter, r *http.Request) {
	if !n.methods(w, r, http.MethodPut, http.MethodPost) {
		return
	}
	var req nomad.JobsParseRequest
	if !n.decode(w, r, &req) {
		return
	}
	if req.JobHCL == "" {
		http.Error(w, "Job spec is empty", http.StatusBadRequest)
		return
	}
	job := fixtureJob()
	if req.Canonicalize {
		job.Canonicalize()
	}
	writeJSON(w, http.StatusOK, job)
}

func (n *NomadStandIn) registerJob(w http.ResponseWriter, r *http.Request) {
	if !n.methods(w, r, http.MethodPut, http.MethodPost) {
		return
	}
	var req nomad.JobRegisterRequest
	if !n.decode(w, r, &req) {
		return
	}
	if req.Job == nil || req.Job.ID == nil || *req.Job.ID == "" {
		n.rec.fail("nomad", r, "register without Job.ID")
		http.Error(w, "Job ID does not match", http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	n.bump()
	idx := n.index
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, nomad.JobRegisterResponse{EvalID: "e0000000-0000-4000-8000-000000000003", EvalCreateIndex: idx, JobModifyIndex: idx})
}

func (n *NomadStandIn) deregisterJob(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Query().Get("purge"); p != "" {
		if _, err := strconv.ParseBool(p); err != nil {
			n.rec.fail("nomad", r, "purge %q is not a bool", p)
		}
	}
	n.mu.Lock()
	n.bump()
	idx := n.index
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, nomad.JobDeregisterResponse{EvalID: "e0000000-0000-4000-8000-000000000004", EvalCreateIndex: idx, JobModifyIndex: idx})
}

func (n *NomadStandIn) nodeMeta(w http.ResponseWriter, r *http.Request) {
	if !n.methods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	nodeID := r.URL.Query().Get("node_id")
	if r.Method == http.MethodPost {
		var req nomad.NodeMetaApplyRequest
		if !n.decode(w, r, &req) {
			return
		}
		nodeID = req.NodeID
		n.mu.Lock()
		for k, v := range req.Meta {
			if v == nil {
				delete(n.dynamicMeta, k)
			} else {
				n.dynamicMeta[k] = v
			}
		}
		n.bump()
		n.mu.Unlock()
	}
	if nodeID == "" {
		// Through a server Nomad needs the node (meta_endpoint.go): the stand-in plays a server.
		http.Error(w, "No local Node and node_id not provided", http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	node := n.nodes[nodeID]
	if node == nil {
		http.Error(w, "node not found", http.StatusNotFound)
		return
	}
	resp := nomad.NodeMetaResponse{Meta: map[string]string{}, Dynamic: map[string]*string{}, Static: node.Meta}
	for k, v := range node.Meta {
		resp.Meta[k] = v
	}
	for k, v := range n.dynamicMeta {
		resp.Dynamic[k] = v
		resp.Meta[k] = *v
	}
	writeJSON(w, http.StatusOK, resp)
}

// schedulerConfig plays command/agent/operator_endpoint.go: GET wraps the configuration in SchedulerConfig; a
// PUT replaces all of it (with ?cas= only while ModifyIndex still matches) and says whether it applied.
func (n *NomadStandIn) schedulerConfig(w http.ResponseWriter, r *http.Request) {
	if !n.methods(w, r, http.MethodGet, http.MethodPut, http.MethodPost) {
		return
	}
	if r.Method == http.MethodGet {
		n.mu.Lock()
		conf := n.schedConfig
		n.mu.Unlock()
		n.answer(w, nomad.SchedulerConfigurationResponse{SchedulerConfig: &conf, QueryMeta: nomad.QueryMeta{KnownLeader: true}})
		return
	}
	var conf nomad.SchedulerConfiguration
	if !n.decode(w, r, &conf) {
		return
	}
	switch conf.SchedulerAlgorithm {
	case "", nomad.SchedulerAlgorithmBinpack, nomad.SchedulerAlgorithmSpread:
	default:
		http.Error(w, fmt.Sprintf("invalid scheduler algorithm: %v", conf.SchedulerAlgorithm), http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	applied := true
	if cas := r.URL.Query(); cas.Has("cas") {
		index, err := strconv.ParseUint(cas.Get("cas"), 10, 64)
		if err != nil {
			n.rec.fail("nomad", r, "cas %q is not an unsigned integer", cas.Get("cas"))
			http.Error(w, "Error parsing cas value", http.StatusBadRequest)
			return
		}
		applied = index == n.schedConfig.ModifyIndex
	}
	if applied {
		n.bump()
		conf.CreateIndex, conf.ModifyIndex = n.schedConfig.CreateIndex, n.index
		n.schedConfig = conf
	}
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(n.index, 10))
	writeJSON(w, http.StatusOK, nomad.SchedulerSetConfigurationResponse{Updated: applied})
}

// eventFrame is the wire shape of one ndjson line (nomad/structs.Events); its events are nomad/api Events.
type eventFrame struct {
	Index  uint64
	Events []nomad.Event
}

// eventStream plays Nomad's stream: a `{}` heartbeat at once, frames 10 and 11, then the first connection
// drops. A resumed connection gets frame 11 again (Nomad restarts at the closest buffered index), then
// 12, then heartbeats until the client leaves.
func (n *NomadStandIn) eventStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, t := range q["topic"] {
		if !validTopic(t) {
			n.rec.fail("nomad", r, "topic %q is not Topic:key with a known topic", t)
		}
	}
	if q.Has("index") {
		if _, err := strconv.ParseUint(q.Get("index"), 10, 64); err != nil {
			n.rec.fail("nomad", r, "index %q is not an unsigned integer", q.Get("index"))
		}
	}
	n.mu.Lock()
	n.streams++
	first := n.streams == 1
	n.streamIndexes = append(n.streamIndexes, q.Get("index"))
	n.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(v any) {
		_ = enc.Encode(v)
		flusher.Flush()
	}
	send(struct{}{})
	if first {
		send(n.frame(10, nomad.TopicNode))
		send(struct{}{})
		send(n.frame(11, nomad.TopicAllocation))
		return
	}
	send(n.frame(11, nomad.TopicAllocation))
	send(n.frame(12, nomad.TopicNode))
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ticker.C:
			send(struct{}{})
		}
	}
}

func (n *NomadStandIn) frame(index uint64, topic nomad.Topic) eventFrame {
	n.mu.Lock()
	defer n.mu.Unlock()
	var payload map[string]any
	var ev nomad.Event
	switch topic {
	case nomad.TopicNode:
		payload = toMap(map[string]any{"Node": n.nodes[NodeA]})
		ev = nomad.Event{Topic: topic, Type: "NodeDrain", Key: NodeA, Index: index, Payload: payload}
	default:
		a := *n.allocs[NewAlloc]
		a.Job = nil // Nomad strips the job from allocation events.
		payload = toMap(map[string]any{"Allocation": &a})
		ev = nomad.Event{Topic: topic, Type: "AllocationUpdated", Key: NewAlloc, FilterKeys: []string{JobID, ""}, Index: index, Payload: payload}
	}
	return eventFrame{Index: index, Events: []nomad.Event{ev}}
}

// StreamIndexes returns the ?index= values of the event stream connections so far.
func (n *NomadStandIn) StreamIndexes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string{}, n.streamIndexes...)
}

func validTopic(t string) bool {
	for _, known := range []nomad.Topic{nomad.TopicDeployment, nomad.TopicEvaluation, nomad.TopicAllocation, nomad.TopicJob, nomad.TopicNode, nomad.TopicNodePool, nomad.TopicService, nomad.TopicAll} {
		if len(t) > len(known)+1 && t[:len(known)+1] == string(known)+":" {
			return true
		}
	}
	return false
}

func toMap(v any) map[string]any {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal fixture: %v", err))
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(fmt.Sprintf("unmarshal fixture: %v", err))
	}
	return out
}
