// Package plugincontract plays Nomad's side of the `chain` driver plugin: go-plugin's client, configured
// with Nomad's handshake, launches the plugin's launcher as Nomad's loader does, and every RPC goes through
// stubs generated from the project's own .proto files (scripts/gen-go-proto.sh).
package plugincontract

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"nomad-chain/contract/gen/nomad/base"
	"nomad-chain/contract/gen/nomad/drivers"
)

// nomadHandshake is Nomad's plugins/base/plugin.go Handshake.
var nomadHandshake = plugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "NOMAD_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255",
}

// connPlugin hands the raw gRPC connection to the test, which calls the generated stubs on it; Nomad's
// loader dispenses "base" and "driver" the same way (the names never go on the wire).
type connPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (connPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

func (connPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	return conn, nil
}

var pluginMap = map[string]plugin.Plugin{"base": connPlugin{}, "driver": connPlugin{}}

// syncBuffer collects the host's log lines, which include the plugin's stderr re-logged at its level.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hostPlugin is one plugin process as Nomad's client holds it.
type hostPlugin struct {
	client *plugin.Client
	base   base.BasePluginClient
	driver drivers.DriverClient
	logs   *syncBuffer
}

func launcherPath(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs("../../../plugin/bin/chain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("plugin launcher missing: %v", err)
	}
	return path
}

func hostLogger(t *testing.T, logs *syncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "nomad",
		Level:      hclog.Trace,
		JSONFormat: true,
		Output:     io.MultiWriter(logs, testWriter{t}),
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// launch starts the plugin exactly as Nomad's loader does (loader/init.go): exec the file in plugin_dir,
// Nomad's handshake, gRPC only. StartTimeout is raised from go-plugin's 1 min for a loaded CI machine: the
// launcher may transpile the TypeScript sources on start.
func launch(t *testing.T) *hostPlugin {
	t.Helper()
	logs := &syncBuffer{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  nomadHandshake,
		Plugins:          pluginMap,
		Cmd:              exec.Command(launcherPath(t)),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hostLogger(t, logs),
		StartTimeout:     3 * time.Minute,
	})
	t.Cleanup(client.Kill)
	return dispense(t, client, logs)
}

// reattach connects to a running plugin from its ReattachConfig, as Nomad does after an agent restart.
func reattach(t *testing.T, rc *plugin.ReattachConfig) *hostPlugin {
	t.Helper()
	logs := &syncBuffer{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  nomadHandshake,
		Plugins:          pluginMap,
		Reattach:         rc,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hostLogger(t, logs),
	})
	t.Cleanup(client.Kill)
	return dispense(t, client, logs)
}

func dispense(t *testing.T, client *plugin.Client, logs *syncBuffer) *hostPlugin {
	t.Helper()
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("go-plugin handshake failed: %v\nhost log:\n%s", err, logs.String())
	}
	rawBase, err := rpc.Dispense("base")
	if err != nil {
		t.Fatalf("dispense base: %v", err)
	}
	rawDriver, err := rpc.Dispense("driver")
	if err != nil {
		t.Fatalf("dispense driver: %v", err)
	}
	return &hostPlugin{
		client: client,
		base:   base.NewBasePluginClient(rawBase.(*grpc.ClientConn)),
		driver: drivers.NewDriverClient(rawDriver.(*grpc.ClientConn)),
		logs:   logs,
	}
}

// kill stops the plugin as Nomad does (go-plugin Kill: GRPCController.Shutdown, then 2 s before SIGKILL) and
// checks it left on its own.
func (p *hostPlugin) kill(t *testing.T) {
	t.Helper()
	p.client.Kill()
	if !p.client.Exited() {
		t.Fatal("plugin process still running after Kill")
	}
	if strings.Contains(p.logs.String(), "plugin failed to exit gracefully") {
		t.Fatalf("plugin ignored GRPCController.Shutdown and was killed:\n%s", p.logs.String())
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
