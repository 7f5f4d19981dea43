// Package chserver runs a local clickhouse-server as a child process: free
// loopback ports, a data directory of its own, a generated configuration.
// `tripline dev` and the tests use it so that history is kept in a real
// ClickHouse without any set-up beyond installing the server package
// (Debian: apt-get install clickhouse-server, which is version 18.16).
//
// The child dies with its parent: it is started with PR_SET_PDEATHSIG on
// Linux, in its own process group, and Stop sends SIGTERM then, after a
// grace period, SIGKILL to the whole group.
package chserver

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Options for Start.
type Options struct {
	// Dir holds the server's data, configuration and logs. Required.
	Dir string
	// Binary is the server executable; empty: FindBinary.
	Binary string
	// TCPPort and HTTPPort; zero: pick free ports.
	TCPPort, HTTPPort int
	// StartTimeout bounds how long Start waits for the server to answer.
	// Default 60s.
	StartTimeout time.Duration
}

// Server is a running child clickhouse-server.
type Server struct {
	opts Options
	bin  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// ErrNotInstalled is returned when no clickhouse-server binary is found.
var ErrNotInstalled = errors.New("clickhouse-server is not installed " +
	"(Debian/Ubuntu: apt-get install clickhouse-server; `make deps` does it; " +
	"or set CLICKHOUSE_ADDR to an existing server)")

// FindBinary returns the command that runs a ClickHouse server: the
// Debian package's clickhouse-server (in PATH or /usr/sbin, /usr/bin), or
// the single `clickhouse` binary of current releases run as `clickhouse server`.
func FindBinary() ([]string, error) {
	for _, name := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return []string{p}, nil
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return []string{p, "server"}, nil
	}
	return nil, ErrNotInstalled
}

// Start writes a configuration under opts.Dir, starts the server and waits
// until it answers a query.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("chserver: Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	s := &Server{opts: opts}
	if opts.Binary != "" {
		s.bin = []string{opts.Binary}
	} else if s.bin, err = FindBinary(); err != nil {
		return nil, err
	}
	// A free port can be taken between picking and binding; try again then.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if opts.TCPPort == 0 || attempt > 0 && s.opts.TCPPort != opts.TCPPort {
			if s.opts.TCPPort, err = freePort(); err != nil {
				return nil, err
			}
			if s.opts.HTTPPort, err = freePort(); err != nil {
				return nil, err
			}
		}
		if lastErr = s.start(ctx); lastErr == nil {
			return s, nil
		}
		if opts.TCPPort != 0 {
			break
		}
	}
	return nil, lastErr
}

// Addr is the native-protocol address (host:port).
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.opts.TCPPort) }

// HTTPAddr is the HTTP interface address (host:port).
func (s *Server) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.opts.HTTPPort) }

// Dir is the server's directory.
func (s *Server) Dir() string { return s.opts.Dir }

// Restart starts a stopped server again on the same ports and data.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return errors.New("chserver: server is running")
	}
	return s.start(ctx)
}

func (s *Server) start(ctx context.Context) error {
	d := s.opts.Dir
	for _, sub := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(d, "config.xml"), []byte(configXML(d, s.opts.TCPPort, s.opts.HTTPPort)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "users.xml"), []byte(usersXML), 0o644); err != nil {
		return err
	}
	args := append(append([]string{}, s.bin[1:]...), "--config-file="+filepath.Join(d, "config.xml"))
	cmd := exec.Command(s.bin[0], args...)
	cmd.Dir = d
	out, err := os.OpenFile(filepath.Join(d, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("chserver: start %s: %w", s.bin[0], err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.err = cmd, done, nil
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		out.Close()
		s.mu.Lock()
		s.err = err
		if s.cmd == cmd {
			s.cmd = nil
		}
		s.mu.Unlock()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	for {
		if err := ping(ctx, s.Addr()); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("chserver: clickhouse-server exited during start-up (%v): %s", s.err, s.logTail())
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("chserver: clickhouse-server did not answer on %s within %s: %s", s.Addr(), s.opts.StartTimeout, s.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop terminates the server: SIGTERM, then SIGKILL to its process group
// after 15 s. It is safe to call on a stopped server.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		killGroup(cmd)
		<-done
	}
	return nil
}

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	killGroup(cmd)
	<-done
}

func (s *Server) logTail() string {
	var parts []string
	for _, f := range []string{"log/err.log", "log/stdout.log"} {
		b, err := os.ReadFile(filepath.Join(s.opts.Dir, f))
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		parts = append(parts, f+": "+string(bytes.TrimSpace(b)))
	}
	if len(parts) == 0 {
		return "no server log"
	}
	return strings.Join(parts, "\n")
}

func ping(ctx context.Context, addr string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		DialTimeout: time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return conn.Ping(pctx)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// configXML is a minimal server configuration. The <yandex> root element
// is what 18.16 requires; current releases still accept it.
func configXML(dir string, tcp, http int) string {
	var esc strings.Builder
	_ = xml.EscapeText(&esc, []byte(dir)) // a data directory may hold & or <
	dir = esc.String()
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>%[1]s/log/server.log</log>
    <errorlog>%[1]s/log/err.log</errorlog>
    <size>10M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
  <timezone>UTC</timezone>
</yandex>
`, dir, tcp, http)
}

const usersXML = `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
`

// PID is the server's process id, or 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
