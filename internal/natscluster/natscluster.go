// Package natscluster runs Tripline's production NATS topology — the three
// nodes of deploy/nats/node1.conf … node3.conf, with deploy/nats/auth.conf —
// on loopback for tests, and stops, kills and restarts single nodes.
//
// Each node is a child process: the test binary itself, started again with
// the node's description in the environment, runs the node in process with
// nats-server's own configuration loader (server.ProcessConfigFile). A child
// process is what makes a crash possible: Kill sends SIGKILL, so the node's
// Raft leaders do not step down and the others must notice and elect, as
// when a machine dies. Stop sends SIGTERM, a clean shutdown (leaders hand
// over first). A test package using the cluster calls Main from TestMain:
//
//	func TestMain(m *testing.M) { natscluster.Main(m) }
//
// What a node changes from its file, and why (everything else — server
// name, cluster name, JetStream limits, max_payload, accounts, users and
// permissions — is the file's):
//
//   - listen, http and cluster.listen: 127.0.0.1 on free ports instead of
//     0.0.0.0:4222/8222/6222, since three nodes share one machine and a test
//     must not listen beyond loopback. A node keeps its ports across
//     restarts.
//   - cluster.routes: the test's three route URLs, in the file's order
//     (node1, node2, node3, each node listing itself as production does),
//     since the production host names tripline-nats-N do not resolve here.
//   - jetstream.store_dir: one temporary directory per node, kept across
//     restarts so a restarted node recovers from its own disk.
//   - logging goes to a file per node, with timestamps; the test shows the
//     last lines of each when it fails (all of it in $TL_NATSCLUSTER_LOGS).
//
// The authorization is not changed: auth.conf reads its users' public NKEYs
// from the environment, and Start generates one key pair per identity and
// sets those variables (so a test using a cluster cannot be parallel).
package natscluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// LogsEnv names a directory where the nodes' whole logs are copied when a
// test fails (the test output shows only their last lines).
const LogsEnv = "TL_NATSCLUSTER_LOGS"

// Size is the number of nodes: node i (0-based) runs deploy/nats/node<i+1>.conf.
const Size = 3

// Account is the account of auth.conf that holds Tripline's streams.
const Account = "TRIPLINE"

// Identity is a user of deploy/nats/auth.conf.
type Identity string

// The identities of auth.conf.
const (
	Engine       Identity = "engine"
	Enforcer     Identity = "enforcer"
	ProducerAcme Identity = "producer-acme"
	ProducerBeta Identity = "producer-beta"
	Proxy        Identity = "proxy"
)

// EnforcerInboxPrefix is the inbox prefix auth.conf grants enforcers
// (they may subscribe to EnforcerInboxPrefix.>).
const EnforcerInboxPrefix = "_INBOX_enforcer"

// identities: the environment variable auth.conf reads each public key
// from, and the inbox prefix the identity may subscribe to.
var identities = map[Identity]struct{ env, inbox string }{
	Engine:       {"TL_ENGINE_NKEY", ""},
	Enforcer:     {"TL_ENFORCER_NKEY", EnforcerInboxPrefix},
	ProducerAcme: {"TL_PRODUCER_ACME_NKEY", "_INBOX_producer_acme"},
	ProducerBeta: {"TL_PRODUCER_BETA_NKEY", "_INBOX_producer_beta"},
	Proxy:        {"TL_PROXY_NKEY", "_INBOX_proxy"},
}

// Timeouts of the helper's own waits.
const (
	startTimeout = 60 * time.Second // a node (or the cluster) becomes healthy
	stopTimeout  = 30 * time.Second // a node exits after SIGTERM
)

// Cluster is a running three-node cluster. Its methods are for the test's
// goroutine.
type Cluster struct {
	t     testing.TB
	dir   string
	keys  map[Identity]nkeys.KeyPair
	nodes [Size]*node
}

type node struct {
	spec  nodeSpec
	name  string // server_name from the file
	proc  *exec.Cmd
	stdin *os.File      // the child exits when this closes (the parent died)
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status, once done is closed
}

// Start runs the cluster from the module's deploy/nats, waits until every
// node reports healthy (a JetStream meta leader is elected and every node is
// current with it) and the leader sees every node online, and kills the
// nodes when the test ends. It sets the NKEY variables auth.conf reads, so
// the test must not be parallel.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Fatal("natscluster: this process is a cluster node: the test package's TestMain must call natscluster.Main")
	}
	confDir, err := configDir()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, dir: t.TempDir(), keys: map[Identity]nkeys.KeyPair{}}
	for id, v := range identities {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(v.env, pub)
		c.keys[id] = kp
	}
	ports, err := freePorts(3 * Size)
	if err != nil {
		t.Fatal(err)
	}
	routes := make([]string, Size)
	for i := range Size {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1])
	}
	for i := range Size {
		spec := nodeSpec{
			Config:      filepath.Join(confDir, fmt.Sprintf("node%d.conf", i+1)),
			Port:        ports[3*i],
			ClusterPort: ports[3*i+1],
			HTTPPort:    ports[3*i+2],
			Routes:      routes,
			StoreDir:    filepath.Join(c.dir, fmt.Sprintf("node%d", i+1), "jetstream"),
		}
		// The parent reads the file too: a configuration that does not load
		// fails here with the loader's message rather than as a dead child.
		opts, err := loadOptions(spec)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = &node{spec: spec, name: opts.ServerName}
	}
	t.Cleanup(c.cleanup)
	for i := range Size {
		c.start(i)
	}
	for i := range Size {
		c.WaitHealthy(i)
	}
	c.waitPeers()
	return c
}

// waitPeers waits until the meta leader sees every other node online and
// current. (Placing an R3 stream also needs the statistics every node
// sends the leader shortly after: the first provisioning may still answer
// "no suitable peers for placement" and is worth retrying.)
func (c *Cluster) waitPeers() {
	c.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		last := "no meta leader"
		if l := c.MetaLeader(); l != -1 {
			info, err := c.Jsz(l)
			switch {
			case err != nil:
				last = err.Error()
			case info.Meta == nil:
				last = "no meta group"
			default:
				ok := 0
				for _, p := range info.Meta.Replicas {
					if p.Current && !p.Offline {
						ok++
					}
				}
				if ok == Size-1 {
					return
				}
				last = fmt.Sprintf("%d of %d peers online and current", ok, Size-1)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natscluster: cluster not formed after %s: %s", startTimeout, last)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// Main runs the tests, or — in a child process started by Start — a node.
// Call it from TestMain.
func Main(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// Name is node i's server_name (tripline-nats-<i+1>).
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Index is the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// URL is node i's client URL.
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].spec.Port)
}

// URLs are the client URLs of every node, comma-separated as nats.Connect
// takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, Size)
	for i := range Size {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// Running reports whether node i's process is up.
func (c *Cluster) Running(i int) bool {
	n := c.nodes[i]
	if n.proc == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Connect opens a connection as id to every node (the client picks one and
// fails over to the others), reconnecting forever, closed when the test
// ends.
func (c *Cluster) Connect(t testing.TB, id Identity, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), append(c.ConnectOptions(id), opts...)...)
	if err != nil {
		t.Fatalf("natscluster: connect as %s: %v", id, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ConnectOptions authenticate as id with the inbox prefix auth.conf grants
// it, and reconnect forever.
func (c *Cluster) ConnectOptions(id Identity) []nats.Option {
	kp, ok := c.keys[id]
	if !ok {
		c.t.Fatalf("natscluster: unknown identity %q", id)
	}
	pub, _ := kp.PublicKey()
	opts := []nats.Option{nats.Name(string(id)), nats.Nkey(pub, kp.Sign), nats.MaxReconnects(-1)}
	if p := identities[id].inbox; p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	return opts
}

// Kill crashes node i (SIGKILL): nothing is flushed or handed over.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if !c.Running(i) {
		c.t.Fatalf("natscluster: Kill(%d): %s is not running", i, n.name)
	}
	_ = n.proc.Process.Kill()
	<-n.done
}

// Stop shuts node i down cleanly (SIGTERM): its Raft leaders step down
// first, as with `systemctl stop`.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if !c.Running(i) {
		c.t.Fatalf("natscluster: Stop(%d): %s is not running", i, n.name)
	}
	_ = n.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		_ = n.proc.Process.Kill()
		<-n.done
		c.t.Fatalf("natscluster: %s did not exit within %s of SIGTERM", n.name, stopTimeout)
	}
	if n.err != nil {
		c.t.Errorf("natscluster: %s exited with %v after SIGTERM (log: %s)", n.name, n.err, c.logPath(i))
	}
}

// Restart starts a stopped or killed node i again with its ports and store
// and waits until it accepts connections; WaitHealthy waits until it has
// caught up.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Running(i) {
		c.t.Fatalf("natscluster: Restart(%d): %s is running", i, c.nodes[i].name)
	}
	c.start(i)
	c.waitHTTP(i, "/healthz?js-enabled-only=true")
}

// WaitHealthy waits until node i's /healthz answers 200: it is connected to
// a JetStream meta leader and current with it, and every stream and
// consumer replica it holds has caught up.
func (c *Cluster) WaitHealthy(i int) {
	c.t.Helper()
	c.waitHTTP(i, "/healthz")
}

// Jsz is node i's own view of JetStream (its /jsz monitoring endpoint,
// with every account, stream and consumer): the state of the replicas it
// holds, not the leaders'.
func (c *Cluster) Jsz(i int) (*server.JSInfo, error) {
	var info server.JSInfo
	body, status, err := c.get(i, "/jsz?accounts=true&streams=true&consumers=true")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s /jsz: %d %s", c.nodes[i].name, status, body)
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("%s /jsz: %w", c.nodes[i].name, err)
	}
	return &info, nil
}

// MetaLeader is the node leading the JetStream meta group, as the first
// running node sees it, or -1 when there is none.
func (c *Cluster) MetaLeader() int {
	for i := range Size {
		if !c.Running(i) {
			continue
		}
		info, err := c.Jsz(i)
		if err != nil || info.Meta == nil {
			return -1
		}
		return c.Index(info.Meta.Leader)
	}
	return -1
}

func (c *Cluster) logPath(i int) string {
	return filepath.Join(c.dir, fmt.Sprintf("node%d.log", i+1))
}

// start runs node i's process.
func (c *Cluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	spec, err := json.Marshal(n.spec)
	if err != nil {
		c.t.Fatal(err)
	}
	log, err := os.OpenFile(c.logPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer log.Close()
	fmt.Fprintf(log, "---- natscluster: starting %s at %s\n", n.name, time.Now().Format(time.RFC3339Nano))
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	defer stdinR.Close()
	// -test.run matches nothing: a binary whose TestMain forgot Main runs no
	// test (and starts no cluster) and exits, which waitHTTP reports.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, log, log
	if err := cmd.Start(); err != nil {
		stdinW.Close()
		c.t.Fatalf("natscluster: start %s: %v", n.name, err)
	}
	n.proc, n.stdin, n.done, n.err = cmd, stdinW, make(chan struct{}), nil
	go func(n *node, done chan struct{}) {
		n.err = cmd.Wait()
		n.stdin.Close()
		close(done)
	}(n, n.done)
}

// waitHTTP polls node i's monitoring path until it answers 200.
func (c *Cluster) waitHTTP(i int, path string) {
	c.t.Helper()
	n := c.nodes[i]
	deadline := time.Now().Add(startTimeout)
	var last string
	for {
		select {
		case <-n.done:
			c.t.Fatalf("natscluster: %s exited (%v) before %s answered; did TestMain call natscluster.Main? log:\n%s",
				n.name, n.err, path, c.logTail(i, 30))
		default:
		}
		body, status, err := c.get(i, path)
		if err == nil && status == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s", status, bytes.TrimSpace(body))
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natscluster: %s %s not OK after %s: %s", n.name, path, startTimeout, last)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (c *Cluster) get(i int, path string) ([]byte, int, error) {
	resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d%s", c.nodes[i].spec.HTTPPort, path))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}

func (c *Cluster) cleanup() {
	for i, n := range c.nodes {
		if n == nil || n.proc == nil {
			continue
		}
		if c.Running(i) {
			_ = n.proc.Process.Kill()
		}
		<-n.done
	}
	if c.t.Failed() {
		if dir := os.Getenv(LogsEnv); dir != "" {
			for i := range Size {
				if b, err := os.ReadFile(c.logPath(i)); err == nil {
					_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)), b, 0o600)
				}
			}
		}
		for i := range Size {
			c.t.Logf("natscluster: last lines of %s's log:\n%s", c.nodes[i].name, c.logTail(i, 40))
		}
	}
}

func (c *Cluster) logTail(i, lines int) string {
	b, err := os.ReadFile(c.logPath(i))
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// configDir is deploy/nats of the module holding the working directory.
func configDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "deploy", "nats"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("natscluster: no go.mod above the working directory, so no deploy/nats")
		}
		dir = parent
	}
}

// freePorts returns n distinct free loopback ports. They are free when this
// returns; a node binds its ports a moment later.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// childEnv carries a node's description to the child process.
const childEnv = "TL_NATSCLUSTER_NODE"

// nodeSpec is what a child needs to run a node: the production file and
// the values that override it (see the package comment).
type nodeSpec struct {
	Config      string   `json:"config"`
	Port        int      `json:"port"`
	ClusterPort int      `json:"cluster_port"`
	HTTPPort    int      `json:"http_port"`
	Routes      []string `json:"routes"`
	StoreDir    string   `json:"store_dir"`
}

// loadOptions reads the node's file with nats-server's loader and applies
// the test's overrides, and nothing else.
func loadOptions(spec nodeSpec) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(spec.Config)
	if err != nil {
		return nil, fmt.Errorf("natscluster: %s: %w", spec.Config, err)
	}
	if !opts.JetStream || opts.Cluster.Name == "" || opts.ServerName == "" || len(opts.Routes) != len(spec.Routes) {
		return nil, fmt.Errorf("natscluster: %s is not a node of a %d-node JetStream cluster (jetstream %v, cluster %q, server_name %q, %d routes)",
			spec.Config, len(spec.Routes), opts.JetStream, opts.Cluster.Name, opts.ServerName, len(opts.Routes))
	}
	opts.Host, opts.Port = "127.0.0.1", spec.Port
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", spec.HTTPPort
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", spec.ClusterPort
	opts.Routes = opts.Routes[:0]
	for _, r := range spec.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, err
		}
		opts.Routes = append(opts.Routes, u)
	}
	opts.StoreDir = spec.StoreDir
	return opts, nil
}

// runChild runs a node until it is signalled or its parent goes away, and
// returns the exit code.
func runChild(specJSON string) int {
	var spec nodeSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "natscluster: node spec:", err)
		return 2
	}
	opts, err := loadOptions(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	opts.Logtime = true
	s, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "natscluster:", err)
		return 2
	}
	// Logs to stderr, which is the node's log file; SIGTERM is handled by
	// the server as in production (clean shutdown, exit 0).
	s.ConfigureLogger()
	if err := server.Run(s); err != nil {
		fmt.Fprintln(os.Stderr, "natscluster:", err)
		return 2
	}
	go func() {
		// stdin is a pipe from the parent: EOF means the test process is
		// gone, and the node must not outlive it.
		_, _ = io.Copy(io.Discard, os.Stdin)
		fmt.Fprintln(os.Stderr, "natscluster: parent gone; exiting")
		os.Exit(3)
	}()
	s.WaitForShutdown()
	return 0
}

// String names the node and its ports, for messages.
func (c *Cluster) String() string {
	var b strings.Builder
	for i, n := range c.nodes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n.name + "@" + strconv.Itoa(n.spec.Port))
	}
	return b.String()
}
