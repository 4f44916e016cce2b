// Package httpapi holds HTTP stand-ins for Nomad and Consul that judge the TypeScript clients against
// HashiCorp's own API structs: every request body must decode into the github.com/hashicorp/nomad/api or
// github.com/hashicorp/consul/api struct with no unknown field and with the exact field spelling.
package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
)

// Failure is one way a client's request departed from HashiCorp's contract.
type Failure struct {
	Server  string `json:"server"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

// Request is what the stand-in saw, for the Jest side to assert on.
type Request struct {
	Server string `json:"server"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	Token  string `json:"token"`
	Body   string `json:"body"`
}

// Recorder keeps failures and requests from both stand-ins.
type Recorder struct {
	mu       sync.Mutex
	failures []Failure
	requests []Request
}

func (r *Recorder) fail(server string, req *http.Request, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, Failure{server, req.Method, req.URL.Path, fmt.Sprintf(format, args...)})
}

func (r *Recorder) record(req Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
}

// Snapshot returns copies of what was recorded so far.
func (r *Recorder) Snapshot() ([]Failure, []Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Failure{}, r.failures...), append([]Request{}, r.requests...)
}

// DecodeStrict decodes body into v, failing on unknown fields (DisallowUnknownFields), on trailing data,
// and on field names that only match case-insensitively (encoding/json would accept those silently).
func DecodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON value")
	}
	var generic any
	if err := json.Unmarshal(body, &generic); err != nil {
		return err
	}
	return checkExactNames(generic, reflect.TypeOf(v), "")
}

var (
	jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func checkExactNames(value any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := value.(map[string]any)
		if !ok {
			return nil
		}
		fields := jsonFields(t)
		for key, item := range obj {
			ft, ok := fields[key]
			if !ok {
				return fmt.Errorf("field %q%s: not spelt as in %s", key, at(path), t.String())
			}
			if err := checkExactNames(item, ft, path+"."+key); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if list, ok := value.([]any); ok {
			for i, item := range list {
				if err := checkExactNames(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if obj, ok := value.(map[string]any); ok {
			for key, item := range obj {
				if err := checkExactNames(item, t.Elem(), path+"."+key); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " at " + path
}

// jsonFields maps each exact JSON name of a struct (embedded structs promoted) to its type.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
