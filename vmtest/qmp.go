package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of QEMU's machine protocol on a unix socket
// (Options.QMP): enough to type on the guest's keyboard and read its
// screen. Asynchronous events QEMU sends between replies are kept in
// Events.
type QMP struct {
	conn net.Conn
	r    *bufio.Reader

	mu     sync.Mutex // one command at a time; guards Events
	events []string
}

// qmpTimeout bounds one command's round trip: QEMU answers at once (key
// presses are queued, not waited for).
const qmpTimeout = 30 * time.Second

// qmpMessage is anything QEMU sends: the greeting, a reply or an event.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *qmpError       `json:"error"`
	Event  string          `json:"event"`
}

type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return e.Class + ": " + e.Desc }

// qmpCommand encodes one command as QMP wants it: a JSON object with
// "execute" and, when args is not nil, "arguments"; one line.
func qmpCommand(execute string, args any) ([]byte, error) {
	cmd := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{execute, args}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", execute, err)
	}
	return append(b, '\n'), nil
}

// qmpKey is one KeyValue of send-key: a key by its QEMU qcode name.
type qmpKey struct {
	Type string `json:"type"` // always "qcode"
	Data string `json:"data"`
}

// sendKeyArgs are send-key's arguments for one chord: every key pressed
// in order, then released in reverse (QEMU does the releasing).
func sendKeyArgs(chord []string) (any, error) {
	if len(chord) == 0 {
		return nil, errors.New("qmp send-key: no keys")
	}
	keys := make([]qmpKey, len(chord))
	for i, k := range chord {
		if k == "" {
			return nil, errors.New("qmp send-key: empty key name")
		}
		keys[i] = qmpKey{Type: "qcode", Data: k}
	}
	return struct {
		Keys []qmpKey `json:"keys"`
	}{keys}, nil
}

// DialQMP connects to QEMU's QMP socket at path, retrying until QEMU has
// made it or ctx ends, and leaves capabilities negotiation behind it.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	var err error
	for {
		var d net.Dialer
		if conn, err = d.DialContext(ctx, "unix", path); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	conn.SetDeadline(time.Now().Add(qmpTimeout))
	m, err := q.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if m.QMP == nil {
		conn.Close()
		return nil, errors.New("qmp: the first message is not QEMU's greeting")
	}
	if _, err := q.Execute("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *QMP) read() (qmpMessage, error) {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return qmpMessage{}, err
	}
	var m qmpMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return qmpMessage{}, fmt.Errorf("qmp: bad message %.200q: %w", line, err)
	}
	return m, nil
}

// Execute runs one command and returns its "return" value.
func (q *QMP) Execute(execute string, args any) (json.RawMessage, error) {
	b, err := qmpCommand(execute, args)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.conn.SetDeadline(time.Now().Add(qmpTimeout))
	if _, err := q.conn.Write(b); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", execute, err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", execute, err)
		}
		switch {
		case m.Event != "":
			q.events = append(q.events, m.Event)
		case m.Error != nil:
			return nil, fmt.Errorf("qmp %s: %w", execute, m.Error)
		case m.Return != nil:
			return m.Return, nil
		default:
			return nil, fmt.Errorf("qmp %s: a message that is neither a reply nor an event", execute)
		}
	}
}

// Events returns the names of the events QEMU sent so far.
func (q *QMP) Events() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.events...)
}

// SendKey presses the keys of one chord together (qcode names, e.g.
// "shift", "a"), then releases them. QEMU queues the presses and answers
// at once: the guest sees them over the next few hundred milliseconds, in
// the order they were sent.
func (q *QMP) SendKey(chord ...string) error {
	args, err := sendKeyArgs(chord)
	if err != nil {
		return err
	}
	_, err = q.Execute("send-key", args)
	return err
}

// Type types s on the guest's keyboard, one chord per character (see
// KeyChords: "\t" is Tab, "\n" Enter). Nothing is sent when s holds a
// character a US keyboard cannot type.
func (q *QMP) Type(s string) error {
	chords, err := KeyChords(s)
	if err != nil {
		return err
	}
	for _, c := range chords {
		if err := q.SendKey(c...); err != nil {
			return err
		}
	}
	return nil
}

// Screendump has QEMU write the guest's screen to path, a PPM (P6) file,
// and returns once the file is complete.
func (q *QMP) Screendump(path string) error {
	_, err := q.Execute("screendump", struct {
		Filename string `json:"filename"`
	}{path})
	return err
}

// Close closes the connection (QEMU keeps running).
func (q *QMP) Close() error { return q.conn.Close() }
