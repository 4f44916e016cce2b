package httpapi

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
)

const (
	ConsulNode = "client-a"
	ConsulAuth = "consul-contract-token"
)

// ConsulStandIn plays one Consul agent: service registration with one check, deregistration, and the
// agent's own service and check lists answered from that state with marshalled consul/api structs.
type ConsulStandIn struct {
	rec         *Recorder
	mu          sync.Mutex
	services    map[string]*consul.AgentServiceRegistration
	checkStatus map[string]string // check ID -> passing|warning|critical
}

func NewConsulStandIn(rec *Recorder) *ConsulStandIn {
	return &ConsulStandIn{rec: rec, services: map[string]*consul.AgentServiceRegistration{}, checkStatus: map[string]string{}}
}

func (c *ConsulStandIn) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", c.register)
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id}", c.deregister)
	mux.HandleFunc("GET /v1/agent/services", c.agentServices)
	mux.HandleFunc("GET /v1/agent/checks", c.agentChecks)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.rec.fail("consul", r, "no such endpoint or method on Consul's agent API")
		http.Error(w, "Not found", http.StatusNotFound)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytesReader(body))
		token := r.Header.Get("X-Consul-Token")
		c.rec.record(Request{"consul", r.Method, r.URL.Path, r.URL.RawQuery, token, string(body)})
		if token != ConsulAuth {
			c.rec.fail("consul", r, "X-Consul-Token is %q, want the configured token", token)
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (c *ConsulStandIn) register(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var reg consul.AgentServiceRegistration
	if err := DecodeStrict(body, &reg); err != nil {
		c.rec.fail("consul", r, "body does not decode strictly into api.AgentServiceRegistration: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if reg.Name == "" {
		http.Error(w, "Missing service name", http.StatusBadRequest)
		return
	}
	if reg.Check == nil {
		c.rec.fail("consul", r, "registration without a Check: the router relies on one")
	} else if problem := checkProblem(reg.Check); problem != "" {
		// Consul's CheckType.Validate would refuse these the same way.
		c.rec.fail("consul", r, "check invalid: %s", problem)
		http.Error(w, problem, http.StatusBadRequest)
		return
	}
	id := reg.ID
	if id == "" {
		id = reg.Name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.services[id] = &reg
	// Consul starts TTL checks critical until the first update; others start critical too unless Status is given.
	status := consul.HealthCritical
	if reg.Check != nil && reg.Check.TTL == "" {
		status = consul.HealthPassing // the stand-in cannot probe: interval checks are taken as passing
	}
	if reg.Check != nil && reg.Check.Status != "" {
		status = reg.Check.Status
	}
	c.checkStatus["service:"+id] = status
	w.WriteHeader(http.StatusOK)
}

func checkProblem(chk *consul.AgentServiceCheck) string {
	for name, v := range map[string]string{"Interval": chk.Interval, "Timeout": chk.Timeout, "TTL": chk.TTL, "DeregisterCriticalServiceAfter": chk.DeregisterCriticalServiceAfter} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return name + " " + strconv.Quote(v) + " is not a positive Go duration"
		}
	}
	interval := chk.HTTP != "" || chk.TCP != "" || chk.UDP != "" || chk.GRPC != "" || chk.H2PING != "" || len(chk.Args) > 0
	switch {
	case chk.Interval != "" && chk.TTL != "":
		return "Interval and TTL cannot both be specified"
	case interval && chk.Interval == "":
		return "Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"
	case !interval && chk.TTL == "" && chk.AliasService == "" && chk.AliasNode == "":
		return "TTL must be > 0 for TTL checks"
	}
	if chk.Status != "" && chk.Status != consul.HealthPassing && chk.Status != consul.HealthWarning && chk.Status != consul.HealthCritical {
		return "Status " + chk.Status + " is not a health status"
	}
	return ""
}

func (c *ConsulStandIn) deregister(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := r.PathValue("id")
	if _, ok := c.services[id]; !ok {
		http.Error(w, "Unknown service ID "+strconv.Quote(id), http.StatusNotFound)
		return
	}
	delete(c.services, id)
	delete(c.checkStatus, "service:"+id)
	w.WriteHeader(http.StatusOK)
}

// filterValue reads the one quoted value of a filter expression of the form `<field> <op> "<value>"`; the
// stand-in evaluates no other filter (Consul's go-bexpr would), and a request with another fails.
func (c *ConsulStandIn) filterValue(r *http.Request, field, op string) (string, bool) {
	filter := r.URL.Query().Get("filter")
	prefix := field + " " + op + " "
	if !strings.HasPrefix(filter, prefix) {
		c.rec.fail("consul", r, "filter %q is not %s %s \"...\"", filter, field, op)
		return "", false
	}
	value, err := strconv.Unquote(strings.TrimPrefix(filter, prefix))
	if err != nil {
		c.rec.fail("consul", r, "filter %q: the value is not a quoted string", filter)
		return "", false
	}
	return value, true
}

func (c *ConsulStandIn) agentServices(w http.ResponseWriter, r *http.Request) {
	part, ok := c.filterValue(r, "ID", "contains")
	if !ok {
		http.Error(w, "Failed to create boolean expression evaluator", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*consul.AgentService{}
	for id, reg := range c.services {
		if strings.Contains(id, part) {
			out[id] = &consul.AgentService{ID: id, Service: reg.Name, Tags: reg.Tags, Meta: reg.Meta, Port: reg.Port, Address: reg.Address, Weights: consul.AgentWeights{Passing: 1, Warning: 1}, Datacenter: "dc1"}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *ConsulStandIn) agentChecks(w http.ResponseWriter, r *http.Request) {
	serviceID, ok := c.filterValue(r, "ServiceID", "==")
	if !ok {
		http.Error(w, "Failed to create boolean expression evaluator", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*consul.AgentCheck{}
	if reg, found := c.services[serviceID]; found {
		id := "service:" + serviceID
		out[id] = &consul.AgentCheck{Node: ConsulNode, CheckID: id, Name: reg.Check.Name, Status: c.checkStatus[id], ServiceID: serviceID, ServiceName: reg.Name, Type: checkType(reg.Check)}
	}
	writeJSON(w, http.StatusOK, out)
}

func checkType(chk *consul.AgentServiceCheck) string {
	switch {
	case chk.HTTP != "":
		return "http"
	case chk.TCP != "":
		return "tcp"
	default:
		return "ttl"
	}
}
