package plugincontract

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"nomad-chain/contract/gen/nomad/base"
	"nomad-chain/contract/gen/nomad/drivers"
	"nomad-chain/contract/gen/nomad/structs"
)

// configure sends SetConfig as Nomad's long-lived instance does: the agent's `config {}` body decoded with
// the plugin's ConfigSchema, msgpack-encoded, plus the client's port range.
func configure(t *testing.T, p *hostPlugin, body string) {
	t.Helper()
	ctx := ctxTimeout(t, time.Minute)
	schema, err := p.base.ConfigSchema(ctx, &base.ConfigSchemaRequest{})
	if err != nil {
		t.Fatalf("ConfigSchema: %v", err)
	}
	_, err = p.base.SetConfig(ctx, &base.SetConfigRequest{
		MsgpackConfig:    encodeConfig(t, schema.GetSpec(), body),
		NomadConfig:      &base.NomadConfig{Driver: &base.NomadDriverConfig{ClientMinPort: 14000, ClientMaxPort: 14512}},
		PluginApiVersion: "v0.1.0",
	})
	if err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// taskConfig builds the TaskConfig Nomad's task runner sends: id "<alloc>/<task>/<8 hex>", the job's
// `config {}` decoded with TaskConfigSchema and msgpack-encoded.
func taskConfig(t *testing.T, p *hostPlugin, allocID, name, body string) *drivers.TaskConfig {
	t.Helper()
	schema, err := p.driver.TaskConfigSchema(ctxTimeout(t, time.Minute), &drivers.TaskConfigSchemaRequest{})
	if err != nil {
		t.Fatalf("TaskConfigSchema: %v", err)
	}
	allocDir := t.TempDir()
	for _, dir := range []string{"alloc", name + "/local", name + "/secrets"} {
		if err := os.MkdirAll(allocDir+"/"+dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &drivers.TaskConfig{
		Id:                  allocID + "/" + name + "/" + newID()[0:8],
		Name:                name,
		MsgpackDriverConfig: encodeConfig(t, schema.GetSpec(), body),
		Env:                 map[string]string{"NOMAD_ALLOC_ID": allocID, "NOMAD_TASK_NAME": name},
		AllocDir:            allocDir,
		StdoutPath:          allocDir + "/alloc/" + name + ".stdout",
		StderrPath:          allocDir + "/alloc/" + name + ".stderr",
		TaskGroupName:       "group",
		JobName:             "job",
		JobId:               "job",
		Namespace:           "default",
		AllocId:             allocID,
		Resources: &drivers.Resources{
			LinuxResources: &drivers.LinuxResources{MemoryLimitBytes: 64 << 20, CpuShares: 100},
		},
	}
}

// events collects the TaskEvents stream, held open as Nomad does.
func events(t *testing.T, p *hostPlugin) <-chan *drivers.DriverTaskEvent {
	t.Helper()
	stream, err := p.driver.TaskEvents(ctxTimeout(t, 10*time.Minute), &drivers.TaskEventsRequest{})
	if err != nil {
		t.Fatalf("TaskEvents: %v", err)
	}
	ch := make(chan *drivers.DriverTaskEvent, 64)
	go func() {
		defer close(ch)
		for {
			event, err := stream.Recv()
			if err != nil {
				return
			}
			ch <- event
		}
	}()
	return ch
}

func waitEvent(t *testing.T, ch <-chan *drivers.DriverTaskEvent, taskID, contains string) *drivers.DriverTaskEvent {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case event, ok := <-ch:
			if !ok {
				t.Fatalf("TaskEvents stream ended before an event containing %q", contains)
			}
			if event.GetTaskId() == taskID && strings.Contains(event.GetMessage(), contains) {
				if event.GetTimestamp() == nil || event.GetAllocId() == "" || event.GetTaskName() == "" {
					t.Fatalf("event lacks timestamp, alloc id or task name: %v", event)
				}
				return event
			}
		case <-timeout:
			t.Fatalf("no task event containing %q for %s", contains, taskID)
		}
	}
}

func grpcCode(err error) codes.Code {
	return status.Code(err)
}

// firstFingerprint opens the Fingerprint stream and returns its first message, which must come at once.
func fingerprints(t *testing.T, p *hostPlugin) drivers.Driver_FingerprintClient {
	t.Helper()
	stream, err := p.driver.Fingerprint(ctxTimeout(t, 5*time.Minute), &drivers.FingerprintRequest{})
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	return stream
}

func TestLoaderProbesAndConfiguresLikeNomad(t *testing.T) {
	// (a) The loader's probe: PluginInfo and ConfigSchema, then Kill.
	p := launch(t)
	rpc, err := p.client.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := rpc.Ping(); err != nil {
		t.Fatalf("grpc.health.v1 check of service \"plugin\": %v", err)
	}
	ctx := ctxTimeout(t, time.Minute)
	info, err := p.base.PluginInfo(ctx, &base.PluginInfoRequest{})
	if err != nil {
		t.Fatalf("PluginInfo: %v", err)
	}
	if info.GetType() != base.PluginType_DRIVER || info.GetName() != "chain" {
		t.Fatalf("PluginInfo type/name = %v/%q", info.GetType(), info.GetName())
	}
	if !regexp.MustCompile(`^v?\d+\.\d+\.\d+`).MatchString(info.GetPluginVersion()) {
		t.Fatalf("plugin_version %q is not a version hashicorp/go-version parses", info.GetPluginVersion())
	}
	if len(info.GetPluginApiVersions()) == 0 || info.GetPluginApiVersions()[0] != "v0.1.0" {
		t.Fatalf("plugin_api_versions = %v, Nomad's driver API is v0.1.0", info.GetPluginApiVersions())
	}
	schema, err := p.base.ConfigSchema(ctx, &base.ConfigSchemaRequest{})
	if err != nil {
		t.Fatalf("ConfigSchema: %v", err)
	}
	// Nomad decodes an absent `config {}` as an empty body, so every default must apply.
	if _, err := tryEncodeConfig(schema.GetSpec(), ""); err != nil {
		t.Fatalf("empty agent config does not decode with the plugin's spec: %v", err)
	}
	if _, err := tryEncodeConfig(schema.GetSpec(), `sidecar_sockett = "/x"`); err == nil {
		t.Fatal("a misspelt agent config attribute decoded; Nomad would reject it")
	}
	p.kill(t)
	assertStderrRelogged(t, p.logs.String())

	// (b) The validation instance: SetConfig twice without the client's settings, then Kill.
	p = launch(t)
	ctx = ctxTimeout(t, time.Minute)
	defaults := encodeConfig(t, schema.GetSpec(), "")
	for i := 0; i < 2; i++ {
		if _, err := p.base.SetConfig(ctx, &base.SetConfigRequest{MsgpackConfig: defaults, PluginApiVersion: "v0.1.0"}); err != nil {
			t.Fatalf("SetConfig #%d: %v", i+1, err)
		}
	}
	bad := encodeConfig(t, schema.GetSpec(), `checkpoint_wait = "forever"`)
	_, err = p.base.SetConfig(ctx, &base.SetConfigRequest{MsgpackConfig: bad})
	if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"checkpoint_wait"`) {
		t.Fatalf("bad agent config: want InvalidArgument naming checkpoint_wait, got %v", err)
	}
	p.kill(t)
}

// assertStderrRelogged checks that go-plugin's host re-logged the plugin's JSON stderr at its own level.
func assertStderrRelogged(t *testing.T, hostLog string) {
	t.Helper()
	for _, line := range strings.Split(hostLog, "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil {
			continue
		}
		if entry["@message"] == "plugin serving" && entry["@level"] == "info" {
			return
		}
	}
	t.Fatalf("the plugin's \"plugin serving\" line was not re-logged at info by the host:\n%s", hostLog)
}

func TestDriverServesEveryRPC(t *testing.T) {
	fake := startFakeSidecar(t)
	standIn := startNomadStandIn(t, "contract-token")
	allocID := newID()
	standIn.putAlloc(&nomad.Allocation{ID: allocID, NodeID: newID(), DesiredStatus: "run"})
	p := launch(t)
	configure(t, p, `
sidecar_socket = "`+fake.socket+`"
nomad_address  = "`+standIn.url+`"
nomad_token    = "contract-token"
`)
	ctx := ctxTimeout(t, 5*time.Minute)

	if _, err := p.driver.Init(ctx, &drivers.InitRequest{}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	caps, err := p.driver.Capabilities(ctx, &drivers.CapabilitiesRequest{})
	if err != nil {
		t.Fatalf("Capabilities: %v", err)
	}
	c := caps.GetCapabilities()
	if !c.GetSendSignals() || !c.GetExec() || c.GetFsIsolation() != drivers.DriverCapabilities_IMAGE ||
		c.GetMountConfigs() != drivers.DriverCapabilities_NO_MOUNTS || c.GetRemoteTasks() || c.GetMustCreateNetwork() {
		t.Fatalf("Capabilities = %v", c)
	}
	fp := fingerprints(t, p)
	first, err := fp.Recv()
	if err != nil {
		t.Fatalf("Fingerprint first message: %v", err)
	}
	if first.GetHealth() != drivers.FingerprintResponse_HEALTHY ||
		first.GetAttributes()["driver.chain.transfer_address"].GetStringVal() != "127.0.0.1:7451" ||
		!first.GetAttributes()["driver.chain.lazy_pages"].GetBoolVal() {
		t.Fatalf("first fingerprint = %v", first)
	}
	taskEvents := events(t, p)

	cfg := taskConfig(t, p, allocID, "web", `
command = "/bin/sleep"
args    = ["3600"]
`)
	started, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: cfg})
	if err != nil {
		t.Fatalf("StartTask: %v", err)
	}
	handle := started.GetHandle()
	if handle.GetVersion() < 1 || len(handle.GetDriverState()) == 0 || !proto.Equal(handle.GetConfig(), cfg) {
		t.Fatalf("StartTask handle must carry version ≥ 1, driver_state and the TaskConfig: %v", handle)
	}
	if _, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: cfg}); grpcCode(err) != codes.AlreadyExists {
		t.Fatalf("second StartTask of the same id: want AlreadyExists, got %v", err)
	}

	inspected, err := p.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id})
	if err != nil {
		t.Fatalf("InspectTask: %v", err)
	}
	task := inspected.GetTask()
	if task.GetState() != drivers.TaskState_RUNNING || task.GetStartedAt() == nil || task.GetCompletedAt() == nil {
		t.Fatalf("InspectTask of a running task = %v (both timestamps must be set)", task)
	}

	if _, err := p.driver.SignalTask(ctx, &drivers.SignalTaskRequest{TaskId: cfg.Id, Signal: "SIGHUP"}); err != nil {
		t.Fatalf("SignalTask: %v", err)
	}
	exec, err := p.driver.ExecTask(ctx, &drivers.ExecTaskRequest{TaskId: cfg.Id, Command: []string{"echo", "hi"}, Timeout: durationpb.New(10 * time.Second)})
	if err != nil {
		t.Fatalf("ExecTask: %v", err)
	}
	if string(exec.GetStdout()) != "ran echo hi" || exec.GetResult().GetExitCode() != 3 {
		t.Fatalf("ExecTask = %v", exec)
	}
	assertExecStreaming(t, p, cfg.Id)

	stats, err := p.driver.TaskStats(ctx, &drivers.TaskStatsRequest{TaskId: cfg.Id, CollectionInterval: durationpb.New(time.Second)})
	if err != nil {
		t.Fatalf("TaskStats: %v", err)
	}
	for i := 0; i < 2; i++ {
		sample, err := stats.Recv()
		if err != nil {
			t.Fatalf("TaskStats sample %d: %v", i, err)
		}
		s := sample.GetStats()
		if s.GetTimestamp() == nil || s.GetAggResourceUsage().GetMemory().GetRss() != 1<<20 || s.GetId() != cfg.Id {
			t.Fatalf("TaskStats sample = %v", s)
		}
	}

	if _, err := p.driver.RecoverTask(ctx, &drivers.RecoverTaskRequest{Handle: handle}); err != nil {
		t.Fatalf("RecoverTask of a task this process knows: %v", err)
	}
	if _, err := p.driver.DestroyTask(ctx, &drivers.DestroyTaskRequest{TaskId: cfg.Id}); grpcCode(err) != codes.FailedPrecondition {
		t.Fatalf("DestroyTask without force of a running task: want FailedPrecondition, got %v", err)
	}

	waited := make(chan *drivers.WaitTaskResponse, 1)
	go func() {
		resp, err := p.driver.WaitTask(ctxTimeout(t, 5*time.Minute), &drivers.WaitTaskRequest{TaskId: cfg.Id})
		if err != nil {
			t.Errorf("WaitTask: %v", err)
		}
		waited <- resp
	}()
	if _, err := p.driver.StopTask(ctx, &drivers.StopTaskRequest{TaskId: cfg.Id, Timeout: durationpb.New(5 * time.Second), Signal: "SIGINT"}); err != nil {
		t.Fatalf("StopTask: %v", err)
	}
	result := <-waited
	if result.GetResult() == nil || result.GetResult().GetExitCode() != 143 || result.GetResult().GetSignal() != 15 {
		t.Fatalf("WaitTask result = %v", result)
	}
	fake.mu.Lock()
	stop := fake.stops[len(fake.stops)-1]
	signals := fake.signals
	fake.mu.Unlock()
	if stop.GetSignal() != "SIGINT" || stop.GetTimeoutMs() != 5000 || len(signals) != 1 || signals[0].GetSignal() != "SIGHUP" {
		t.Fatalf("sidecar saw stop %v and signals %v", stop, signals)
	}
	if fake.callCount("MigrateToPeer") != 0 {
		t.Fatal("a plain stop asked the sidecar to migrate")
	}

	inspected, err = p.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id})
	if err != nil || inspected.GetTask().GetState() != drivers.TaskState_EXITED || inspected.GetTask().GetResult().GetExitCode() != 143 {
		t.Fatalf("InspectTask after stop = %v, %v", inspected, err)
	}
	if _, err := p.driver.DestroyTask(ctx, &drivers.DestroyTaskRequest{TaskId: cfg.Id}); err != nil {
		t.Fatalf("DestroyTask of an exited task: %v", err)
	}
	if _, err := p.driver.DestroyTask(ctx, &drivers.DestroyTaskRequest{TaskId: cfg.Id, Force: true}); err != nil {
		t.Fatalf("DestroyTask again (Nomad repeats it) must succeed: %v", err)
	}
	if _, err := p.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id}); grpcCode(err) != codes.NotFound {
		t.Fatalf("InspectTask after destroy: want NotFound, got %v", err)
	}
	if _, err := p.driver.CreateNetwork(ctx, &drivers.CreateNetworkRequest{AllocId: allocID}); grpcCode(err) != codes.Unimplemented {
		t.Fatalf("CreateNetwork: want Unimplemented, got %v", err)
	}
	if _, err := p.driver.DestroyNetwork(ctx, &drivers.DestroyNetworkRequest{AllocId: allocID}); grpcCode(err) != codes.Unimplemented {
		t.Fatalf("DestroyNetwork: want Unimplemented, got %v", err)
	}
	if _, err := p.driver.Shutdown(ctx, &drivers.ShutdownRequest{}); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if bad := standIn.unexpected(); len(bad) > 0 {
		t.Fatalf("plugin made requests Nomad's API does not serve: %v", bad)
	}
	select {
	case event := <-taskEvents:
		if event != nil {
			t.Fatalf("a plain cold start and stop emitted an event: %v", event)
		}
	default:
	}
	p.kill(t)
	// Streams end when the plugin goes away, as Nomad expects (it reopens them on a new instance).
	if _, err := fp.Recv(); err == nil {
		t.Fatal("Fingerprint stream still open after Kill")
	}
}

func assertExecStreaming(t *testing.T, p *hostPlugin, taskID string) {
	t.Helper()
	stream, err := p.driver.ExecTaskStreaming(ctxTimeout(t, time.Minute))
	if err != nil {
		t.Fatalf("ExecTaskStreaming: %v", err)
	}
	if err := stream.Send(&drivers.ExecTaskStreamingRequest{Setup: &drivers.ExecTaskStreamingRequest_Setup{TaskId: taskID, Command: []string{"echo", "streamed"}}}); err != nil {
		t.Fatalf("ExecTaskStreaming setup: %v", err)
	}
	var stdout []byte
	for {
		frame, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatal("ExecTaskStreaming ended without an exited frame")
		}
		if err != nil {
			t.Fatalf("ExecTaskStreaming: %v", err)
		}
		stdout = append(stdout, frame.GetStdout().GetData()...)
		if frame.GetExited() {
			if frame.GetResult().GetExitCode() != 3 || string(stdout) != "ran echo streamed" {
				t.Fatalf("ExecTaskStreaming: exit %v, stdout %q", frame.GetResult(), stdout)
			}
			break
		}
	}
	_ = stream.CloseSend()
}

func TestMalformedTaskConfigNamesTheAttribute(t *testing.T) {
	fake := startFakeSidecar(t)
	p := launch(t)
	configure(t, p, `
sidecar_socket = "`+fake.socket+`"
nomad_address  = ""
`)
	ctx := ctxTimeout(t, time.Minute)
	cases := map[string]string{
		"checkpoint_wait": "command = \"/bin/true\"\ncheckpoint_wait = \"soon\"",
		"migration_mode":  "command = \"/bin/true\"\nchain = false\nmigration_mode = \"lazy\"",
		"command":         "command = \"\"",
		"rootfs":          "command = \"/bin/true\"\nrootfs = \"relative/dir\"",
	}
	for attribute, body := range cases {
		cfg := taskConfig(t, p, newID(), "bad", body)
		_, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: cfg})
		if grpcCode(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), `attribute "`+attribute+`"`) {
			t.Errorf("config %q: want InvalidArgument naming %q, got %v", body, attribute, err)
		}
	}
	// Nomad itself rejects unknown attributes and a missing command while decoding with the schema.
	schema, err := p.driver.TaskConfigSchema(ctx, &drivers.TaskConfigSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tryEncodeConfig(schema.GetSpec(), `args = ["x"]`); err == nil || !strings.Contains(err.Error(), "command") {
		t.Errorf("a task config without command decoded: %v", err)
	}
	if _, err := tryEncodeConfig(schema.GetSpec(), "command = \"/bin/true\"\nimage = \"x\""); err == nil {
		t.Error("a task config with an unknown attribute decoded")
	}
	if fake.callCount("StartTask") != 0 || fake.callCount("TakeOver") != 0 {
		t.Fatal("an invalid task config reached the sidecar")
	}
	p.kill(t)
}

func TestRecoverableErrorAndUnhealthyFingerprint(t *testing.T) {
	fake := startFakeSidecar(t)
	p := launch(t)
	configure(t, p, `
sidecar_socket     = "/nonexistent/nc-b1/sidecar.sock"
nomad_address      = ""
fingerprint_period = "1s"
`)
	ctx := ctxTimeout(t, 2*time.Minute)
	first, err := fingerprints(t, p).Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetHealth() != drivers.FingerprintResponse_UNHEALTHY || !strings.Contains(first.GetHealthDescription(), "sidecar unreachable") {
		t.Fatalf("fingerprint with no sidecar = %v", first)
	}
	cfg := taskConfig(t, p, newID(), "web", `command = "/bin/sleep"`)
	_, err = p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: cfg})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("StartTask with the sidecar down: want FailedPrecondition (never Unavailable), got %v", err)
	}
	details := st.Details()
	if len(details) != 1 {
		t.Fatalf("want one RecoverableError detail in grpc-status-details-bin, got %v", details)
	}
	recoverable, ok := details[0].(*structs.RecoverableError)
	if !ok || !recoverable.GetRecoverable() {
		t.Fatalf("detail = %#v, want RecoverableError{recoverable: true}", details[0])
	}

	// Now a sidecar that answers but reports CRIU unusable: unhealthy, with its reason.
	fake.setHealth(false, "criu check failed: no soft-dirty")
	configure(t, p, `
sidecar_socket     = "`+fake.socket+`"
nomad_address      = ""
fingerprint_period = "1s"
`)
	stream := fingerprints(t, p)
	fp, err := stream.Recv()
	if err != nil || fp.GetHealth() != drivers.FingerprintResponse_UNHEALTHY || fp.GetHealthDescription() != "criu check failed: no soft-dirty" {
		t.Fatalf("fingerprint of an unhealthy sidecar = %v, %v", fp, err)
	}
	fake.setHealth(true, "")
	fp, err = stream.Recv()
	if err != nil || fp.GetHealth() != drivers.FingerprintResponse_HEALTHY {
		t.Fatalf("fingerprint after the sidecar recovered = %v, %v", fp, err)
	}
	p.kill(t)
}

func TestRecoverTaskAfterReattachAndRelaunch(t *testing.T) {
	fake := startFakeSidecar(t)
	config := `
sidecar_socket = "` + fake.socket + `"
nomad_address  = ""
`
	first := launch(t)
	configure(t, first, config)
	ctx := ctxTimeout(t, 5*time.Minute)
	cfg := taskConfig(t, first, newID(), "web", `command = "/bin/sleep"`)
	started, err := first.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: cfg})
	if err != nil {
		t.Fatalf("StartTask: %v", err)
	}
	handle := started.GetHandle()

	// An agent restart that finds the plugin alive reattaches by address (no handshake).
	again := reattach(t, first.client.ReattachConfig())
	inspected, err := again.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id})
	if err != nil || inspected.GetTask().GetState() != drivers.TaskState_RUNNING {
		t.Fatalf("InspectTask through a reattached client = %v, %v", inspected, err)
	}
	again.kill(t)

	// A graceful agent restart kills the plugin; the task lives on in the sidecar and a fresh process
	// recovers it from the handle Nomad stored.
	fresh := launch(t)
	configure(t, fresh, config)
	if _, err := fresh.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id}); grpcCode(err) != codes.NotFound {
		t.Fatalf("a fresh plugin knows the task before RecoverTask: %v", err)
	}
	if _, err := fresh.driver.RecoverTask(ctx, &drivers.RecoverTaskRequest{Handle: handle}); err != nil {
		t.Fatalf("RecoverTask in a fresh process: %v", err)
	}
	inspected, err = fresh.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id})
	if err != nil || inspected.GetTask().GetState() != drivers.TaskState_RUNNING || inspected.GetTask().GetId() != cfg.Id {
		t.Fatalf("InspectTask after recovery = %v, %v", inspected, err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := fresh.driver.WaitTask(ctxTimeout(t, 5*time.Minute), &drivers.WaitTaskRequest{TaskId: cfg.Id})
		waited <- err
	}()
	if _, err := fresh.driver.StopTask(ctx, &drivers.StopTaskRequest{TaskId: cfg.Id, Timeout: durationpb.New(time.Second)}); err != nil {
		t.Fatalf("StopTask after recovery: %v", err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("WaitTask after recovery: %v", err)
	}

	// Recovery failures Nomad answers with DestroyTask + a new StartTask.
	corrupt := proto.Clone(handle).(*drivers.TaskHandle)
	corrupt.Config.Id = cfg.Id + "-corrupt"
	corrupt.DriverState = []byte("{not json")
	if _, err := fresh.driver.RecoverTask(ctx, &drivers.RecoverTaskRequest{Handle: corrupt}); grpcCode(err) != codes.InvalidArgument {
		t.Fatalf("RecoverTask with a corrupt driver_state: want InvalidArgument, got %v", err)
	}
	future := proto.Clone(handle).(*drivers.TaskHandle)
	future.Config.Id = cfg.Id + "-future"
	future.Version = 99
	if _, err := fresh.driver.RecoverTask(ctx, &drivers.RecoverTaskRequest{Handle: future}); grpcCode(err) != codes.InvalidArgument {
		t.Fatalf("RecoverTask with an unknown driver_state version: want InvalidArgument, got %v", err)
	}
	if _, err := fresh.driver.DestroyTask(ctx, &drivers.DestroyTaskRequest{TaskId: cfg.Id, Force: true}); err != nil {
		t.Fatalf("DestroyTask: %v", err)
	}
	gone := proto.Clone(handle).(*drivers.TaskHandle)
	gone.Config.Id = cfg.Id + "-gone"
	if _, err := fresh.driver.RecoverTask(ctx, &drivers.RecoverTaskRequest{Handle: gone}); grpcCode(err) != codes.NotFound {
		t.Fatalf("RecoverTask of a task the sidecar no longer has: want NotFound, got %v", err)
	}
	fresh.kill(t)
}

func TestChainedStopAndStartFollowNomadLineage(t *testing.T) {
	fake := startFakeSidecar(t)
	standIn := startNomadStandIn(t, "")
	oldAlloc, newAlloc, oldNode, newNode := newID(), newID(), newID(), newID()
	standIn.putAlloc(&nomad.Allocation{ID: oldAlloc, NodeID: oldNode, DesiredStatus: "stop",
		NextAllocation: newAlloc, DesiredTransition: nomad.DesiredTransition{Migrate: pointer(true)}})
	standIn.putAlloc(&nomad.Allocation{ID: newAlloc, NodeID: newNode, DesiredStatus: "run", PreviousAllocation: oldAlloc})
	standIn.putNode(&nomad.Node{ID: newNode, Name: "client-b", Attributes: map[string]string{
		"driver.chain":                  "1",
		"driver.chain.transfer_address": "198.18.0.3:7451",
	}})
	p := launch(t)
	configure(t, p, `
sidecar_socket = "`+fake.socket+`"
nomad_address  = "`+standIn.url+`"
`)
	ctx := ctxTimeout(t, 5*time.Minute)
	taskEvents := events(t, p)

	// The old allocation's task: cold start (its predecessor is unknown to Nomad), then a migrating stop.
	oldCfg := taskConfig(t, p, oldAlloc, "web", "command = \"/bin/sleep\"\nmigration_mode = \"pre-copy\"")
	if _, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: oldCfg}); err != nil {
		t.Fatalf("StartTask old: %v", err)
	}
	waited := make(chan *drivers.WaitTaskResponse, 1)
	go func() {
		resp, _ := p.driver.WaitTask(ctxTimeout(t, 5*time.Minute), &drivers.WaitTaskRequest{TaskId: oldCfg.Id})
		waited <- resp
	}()
	if _, err := p.driver.StopTask(ctx, &drivers.StopTaskRequest{TaskId: oldCfg.Id, Timeout: durationpb.New(5 * time.Second)}); err != nil {
		t.Fatalf("StopTask of a migrating allocation: %v", err)
	}
	if resp := <-waited; resp.GetResult() == nil {
		t.Fatalf("WaitTask after hand-over = %v", resp)
	}
	fake.mu.Lock()
	migrations := append([]*sidecarMigrate(nil), toMigrations(fake)...)
	stops := len(fake.stops)
	fake.mu.Unlock()
	if len(migrations) != 1 || migrations[0].peer != "198.18.0.3:7451" || migrations[0].key != newAlloc+"/web" || migrations[0].mode != "MIGRATION_MODE_PRE_COPY" {
		t.Fatalf("MigrateToPeer requests = %+v", migrations)
	}
	if stops != 0 {
		t.Fatal("a migrating stop also killed the task")
	}
	waitEvent(t, taskEvents, oldCfg.Id, "Handed over to allocation "+newAlloc)

	// The replacement finds the checkpoint under "<its alloc id>/<task>" and restores it.
	newCfg := taskConfig(t, p, newAlloc, "web", `command = "/bin/sleep"`)
	if _, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: newCfg}); err != nil {
		t.Fatalf("StartTask replacement: %v", err)
	}
	inspected, err := p.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: newCfg.Id})
	if err != nil || inspected.GetDriver().GetAttributes()["restored_from_checkpoint"] != "ckpt-1" {
		t.Fatalf("replacement was not restored: %v, %v", inspected, err)
	}
	waitEvent(t, taskEvents, newCfg.Id, "Restored from checkpoint ckpt-1")
	fake.mu.Lock()
	takeOver := fake.takeOvers[len(fake.takeOvers)-1]
	fake.mu.Unlock()
	if takeOver.GetHandoverKey() != newAlloc+"/web" || takeOver.GetWaitMs() != 30000 || !takeOver.GetColdStartFallback() {
		t.Fatalf("TakeOver = %v, want key <new alloc>/web, the default 30 s wait and a cold start as fallback", takeOver)
	}

	// A replacement whose predecessor migrated but whose checkpoint never comes: cold start, and an event.
	lateOld, lateNew := newID(), newID()
	standIn.putAlloc(&nomad.Allocation{ID: lateOld, NodeID: oldNode, DesiredStatus: "stop", NextAllocation: lateNew,
		DesiredTransition: nomad.DesiredTransition{Migrate: pointer(true)}})
	standIn.putAlloc(&nomad.Allocation{ID: lateNew, NodeID: newNode, DesiredStatus: "run", PreviousAllocation: lateOld})
	lateCfg := taskConfig(t, p, lateNew, "web", "command = \"/bin/sleep\"\ncheckpoint_wait = \"1s\"")
	if _, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: lateCfg}); err != nil {
		t.Fatalf("StartTask without a checkpoint: %v", err)
	}
	waitEvent(t, taskEvents, lateCfg.Id, "No checkpoint from previous allocation "+lateOld)

	// A stop that is not a migration (the user stopped the job) kills the task as any driver would.
	plain := newID()
	standIn.putAlloc(&nomad.Allocation{ID: plain, NodeID: oldNode, DesiredStatus: "stop"})
	plainCfg := taskConfig(t, p, plain, "web", `command = "/bin/sleep"`)
	if _, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: plainCfg}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.driver.StopTask(ctx, &drivers.StopTaskRequest{TaskId: plainCfg.Id, Timeout: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if fake.callCount("MigrateToPeer") != 1 || fake.callCount("StopTask") != 1 {
		t.Fatalf("plain stop: MigrateToPeer %d, StopTask %d calls", fake.callCount("MigrateToPeer"), fake.callCount("StopTask"))
	}
	if bad := standIn.unexpected(); len(bad) > 0 {
		t.Fatalf("plugin made requests Nomad's API does not serve: %v", bad)
	}
	p.kill(t)
}

type sidecarMigrate struct{ peer, key, mode string }

func toMigrations(f *fakeSidecar) []*sidecarMigrate {
	var out []*sidecarMigrate
	for _, m := range f.migrations {
		out = append(out, &sidecarMigrate{peer: m.GetPeerAddress(), key: m.GetHandoverKey(), mode: m.GetMode().String()})
	}
	return out
}

func pointer[T any](v T) *T { return &v }
