package httpapi

import (
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
)

const (
	ConsulNode = "client-a"
	ConsulAuth = "consul-contract-token"
)

// ConsulStandIn plays one Consul agent: service registration with one check, maintenance mode, TTL
// updates, and /v1/health/service answered from that state with marshalled consul/api structs.
type ConsulStandIn struct {
	rec         *Recorder
	mu          sync.Mutex
	services    map[string]*consul.AgentServiceRegistration
	checkStatus map[string]string // check ID -> passing|warning|critical
	maintenance map[string]string // service ID -> reason
}

func NewConsulStandIn(rec *Recorder) *ConsulStandIn {
	return &ConsulStandIn{rec: rec, services: map[string]*consul.AgentServiceRegistration{}, checkStatus: map[string]string{}, maintenance: map[string]string{}}
}

func (c *ConsulStandIn) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", c.register)
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id}", c.deregister)
	mux.HandleFunc("PUT /v1/agent/service/maintenance/{id}", c.setMaintenance)
	mux.HandleFunc("PUT /v1/agent/check/pass/{id}", c.ttl(consul.HealthPassing))
	mux.HandleFunc("PUT /v1/agent/check/warn/{id}", c.ttl(consul.HealthWarning))
	mux.HandleFunc("PUT /v1/agent/check/fail/{id}", c.ttl(consul.HealthCritical))
	mux.HandleFunc("GET /v1/health/service/{name}", c.healthService)
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
	delete(c.maintenance, id)
	w.WriteHeader(http.StatusOK)
}

func (c *ConsulStandIn) setMaintenance(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("enable") {
		c.rec.fail("consul", r, "maintenance without enable")
		http.Error(w, "Missing value for enable", http.StatusBadRequest)
		return
	}
	enable, err := strconv.ParseBool(q.Get("enable"))
	if err != nil {
		c.rec.fail("consul", r, "enable %q is not a bool", q.Get("enable"))
		http.Error(w, "Invalid value for enable", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := r.PathValue("id")
	if _, ok := c.services[id]; !ok {
		http.Error(w, "Unknown service ID "+strconv.Quote(id), http.StatusNotFound)
		return
	}
	if enable {
		c.maintenance[id] = q.Get("reason")
	} else {
		delete(c.maintenance, id)
	}
	w.WriteHeader(http.StatusOK)
}

func (c *ConsulStandIn) ttl(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		id := r.PathValue("id")
		if _, ok := c.checkStatus[id]; !ok {
			http.Error(w, "Unknown check ID "+strconv.Quote(id), http.StatusNotFound)
			return
		}
		c.checkStatus[id] = status
		w.WriteHeader(http.StatusOK)
	}
}

func (c *ConsulStandIn) healthService(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	passingOnly := false
	if q.Has("passing") {
		v := q.Get("passing")
		if v == "" {
			v = "true"
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			c.rec.fail("consul", r, "passing %q is not a bool", q.Get("passing"))
			http.Error(w, "Invalid value for ?passing", http.StatusBadRequest)
			return
		}
		passingOnly = b
	}
	name := r.PathValue("name")
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.services))
	for id := range c.services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := []*consul.ServiceEntry{}
	for _, id := range ids {
		reg := c.services[id]
		if reg.Name != name {
			continue
		}
		checks := consul.HealthChecks{{Node: ConsulNode, CheckID: "serfHealth", Name: "Serf Health Status", Status: consul.HealthPassing}}
		checks = append(checks, &consul.HealthCheck{Node: ConsulNode, CheckID: "service:" + id, Name: reg.Check.Name, Status: c.checkStatus["service:"+id], ServiceID: id, ServiceName: reg.Name, Type: checkType(reg.Check)})
		if reason, ok := c.maintenance[id]; ok {
			checks = append(checks, &consul.HealthCheck{Node: ConsulNode, CheckID: "_service_maintenance:" + id, Name: "Service Maintenance Mode", Notes: reason, Status: consul.HealthMaint, ServiceID: id, ServiceName: reg.Name})
		}
		if passingOnly && checks.AggregatedStatus() != consul.HealthPassing {
			continue
		}
		out = append(out, &consul.ServiceEntry{
			Node:    &consul.Node{ID: "c0a5a1e0-0000-4000-8000-000000000001", Node: ConsulNode, Address: "127.0.0.1", Datacenter: "dc1"},
			Service: &consul.AgentService{ID: id, Service: reg.Name, Tags: reg.Tags, Meta: reg.Meta, Port: reg.Port, Address: reg.Address, Weights: consul.AgentWeights{Passing: 1, Warning: 1}},
			Checks:  checks,
		})
	}
	w.Header().Set("X-Consul-Index", "42")
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
