package plugincontract

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	nomad "github.com/hashicorp/nomad/api"
)

// nomadStandIn answers the two endpoints the plugin reads allocation lineage from with marshalled
// github.com/hashicorp/nomad/api structs, so field names and types are HashiCorp's.
type nomadStandIn struct {
	url    string
	token  string
	mu     sync.Mutex
	allocs map[string]*nomad.Allocation
	nodes  map[string]*nomad.Node
	bad    []string
}

func startNomadStandIn(t *testing.T, token string) *nomadStandIn {
	t.Helper()
	n := &nomadStandIn{token: token, allocs: map[string]*nomad.Allocation{}, nodes: map[string]*nomad.Node{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/allocation/{id}", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		alloc, ok := n.allocs[r.PathValue("id")]
		n.mu.Unlock()
		n.answer(w, r, alloc, ok)
	})
	mux.HandleFunc("GET /v1/node/{id}", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		node, ok := n.nodes[r.PathValue("id")]
		n.mu.Unlock()
		n.answer(w, r, node, ok)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.bad = append(n.bad, r.Method+" "+r.URL.Path)
		n.mu.Unlock()
		http.Error(w, "unexpected request", http.StatusBadRequest)
	})
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	n.url = server.URL
	return n
}

func (n *nomadStandIn) answer(w http.ResponseWriter, r *http.Request, v any, ok bool) {
	if n.token != "" && r.Header.Get("X-Nomad-Token") != n.token {
		http.Error(w, "Permission denied", http.StatusForbidden)
		return
	}
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", "42")
	_ = json.NewEncoder(w).Encode(v)
}

func (n *nomadStandIn) putAlloc(a *nomad.Allocation) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.allocs[a.ID] = a
}

func (n *nomadStandIn) putNode(node *nomad.Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes[node.ID] = node
}

func (n *nomadStandIn) unexpected() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.bad...)
}
