package state

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
)

// populate puts rows in every table of d, through the store's own
// functions, and returns its counts (each table has rows).
func populate(t *testing.T, d *DB) Counts {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(time.Hour)
	for i := range 3 {
		mac := fmt.Sprintf("52:54:00:00:00:%02x", i)
		_, err := d.Enter(ctx, Machine{MAC: mac, Profile: "kiosk", Address: fmt.Sprintf("192.0.2.%d", i), Hostname: "pc"}, "open", Quota{})
		must(err)
		must(d.SetAdmissionSecret(ctx, mac, "kiosk", "chap'"+mac, "target"))
		_, err = d.SetMachineID(ctx, mac, "id-"+mac)
		must(err)
		must(d.Ask(ctx, Request{MAC: mac, Profile: "lab", Address: "198.51.100.1", Hostname: "h", Conflict: i == 1}, Quota{}))
		b, err := d.StartBoot(ctx, Boot{MAC: mac, Profile: "kiosk", Address: "192.0.2.1", Image: "sha256:aa"}, BootEvent{Source: "server", Phase: "script", Outcome: "ok"})
		must(err)
		_, err = d.AddBootEvent(ctx, b.ID, BootEvent{Source: "agent", Phase: "lower", Outcome: "ok", Seconds: 1.25, Bytes: 1 << 40, Message: "ünïcode ✓"})
		must(err)
		must(d.PutBootToken(ctx, fmt.Sprintf("tok%d", i), BootToken{Purpose: "doc", MAC: mac, Profile: "kiosk", Address: "192.0.2.1", BootID: b.ID, Expires: exp}))
		must(d.PutLease(ctx, Lease{MAC: mac, IP: fmt.Sprintf("192.0.2.%d", 100+i), Expires: exp, Hostname: "pc"}))
		must(d.PutLease6(ctx, Lease6{DUID: "0003" + mac, IAID: 0xfffffffe, IP: fmt.Sprintf("2001:db8::%d", i), Expires: exp, MAC: mac}))
		must(d.AddWorkingSet(ctx, b.ID, "sha256:aa", boot.WorkingSet{ChunkSize: 256 << 10, Image: ranges(fmt.Sprintf("0-3,%d", 9+i)), Tree: ranges("0")}))
	}
	must(d.AddUser(ctx, "alice", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"))
	must(d.SetUserSecret(ctx, "alice", "s", "t"))
	_, err := d.BeginDisk(ctx, Disk{OwnerKind: OwnerUser, Owner: "alice", Profile: "lab", Kind: DiskUpper, Size: 4 << 30}, Quota{}, func(id int64) string { return fmt.Sprintf("/d/%d", id) })
	must(err)
	_, err = d.AddDisk(ctx, Disk{OwnerKind: OwnerMachine, Owner: "52:54:00:00:00:00", Profile: "kiosk", Kind: DiskCow, Path: "/d/cow", Size: 1, Base: "/base 1 2"})
	must(err)
	must(d.AddAPIToken(ctx, APIToken{ID: "0123456789abcdef", Name: "ops", Scope: "operate", Hash: "h"}))
	must(d.PutConsoleSession(ctx, ConsoleSession{Hash: "sess", TokenID: "0123456789abcdef", Expires: exp}, 10))
	must(d.PutBootToken(ctx, "attest0", BootToken{Purpose: "attest", MAC: "52:54:00:00:00:00", Profile: "tpm", Address: "192.0.2.1", Expires: exp, Served: `{"kernel":"sha256:aa"}`}))
	must(d.AskTPM(ctx, "52:54:00:00:00:00", "sha256:ee", "192.0.2.1"))
	must(d.PutAttestSession(ctx, "sess0", AttestSession{MAC: "52:54:00:00:00:00", Profile: "tpm", Address: "192.0.2.1", EK: "sha256:ee", AK: []byte{1}, Nonce: []byte{2}, Secret: []byte{3}, Served: "{}", Expires: exp}))
	for _, dg := range []string{"sha256:aa", "sha256:bb"} {
		_, err := d.PublishImage(ctx, Image{Name: "bookworm", Digest: dg, Size: 1, Kind: "root", KernelRelease: "6.1"})
		must(err)
	}
	must(d.Register(ctx, ServerInfo{Name: "a", Instance: "i", URLs: []string{"http://192.0.2.1:8080"}, Portal: "192.0.2.1:3260"}))
	_, err = d.TakeToken(ctx, "login:alice", time.Minute, 5)
	must(err)
	c, err := d.Counts(ctx)
	must(err)
	for _, tb := range Tables {
		if c[tb.Name] == 0 {
			t.Fatalf("populate left %s empty", tb.Name)
		}
	}
	return c
}

// dump reads every row of every table, each row as a map of its columns
// (the backends may order columns differently).
func dump(t *testing.T, d *DB) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, tb := range Tables {
		rows, err := d.sql.QueryContext(context.Background(), `SELECT * FROM `+tb.Name+` ORDER BY `+tb.Order)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			row := map[string]any{}
			for i, c := range cols {
				if b, ok := vals[i].([]byte); ok {
					vals[i] = string(b)
				}
				row[c] = vals[i]
			}
			out[tb.Name] = append(out[tb.Name], row)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out
}

// TestTablesAreTheSchema: Tables names every table of the schema, so a
// copy leaves none behind.
func TestTablesAreTheSchema(t *testing.T) {
	d := openSQLite(t)
	var names []string
	rows, err := d.sql.QueryContext(context.Background(), `SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'schema_version' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	var want []string
	for _, tb := range Tables {
		want = append(want, tb.Name)
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("Tables and the schema's tables (-Tables +schema):\n%s", diff)
	}
}

// TestCopy: a populated SQLite store copied to an empty PostgreSQL one
// has every row of every table; a second copy is refused (the target is
// not empty) unless told to replace; ids the target assigns next are
// past the copied ones; and the way back (PostgreSQL to a new SQLite
// file) gives the same rows again.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	src := openSQLite(t)
	want := populate(t, src)
	dst := openPostgres(t)
	got, err := Copy(ctx, src, dst, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-source +copied):\n%s", diff)
	}
	before := dump(t, src)
	if diff := cmp.Diff(before, dump(t, dst)); diff != "" {
		t.Errorf("rows (-sqlite +postgres):\n%s", diff)
	}
	// Not twice without --replace, and nothing changes.
	_, err = Copy(ctx, src, dst, false)
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "3 machines") {
		t.Errorf("copy onto a store with rows: %v", err)
	}
	if _, err := Copy(ctx, src, dst, true); err != nil {
		t.Fatalf("copy with replace: %v", err)
	}
	if diff := cmp.Diff(before, dump(t, dst)); diff != "" {
		t.Errorf("rows after replace (-sqlite +postgres):\n%s", diff)
	}
	// The target goes on assigning ids after the copied ones.
	b, err := dst.StartBoot(ctx, Boot{MAC: "52:54:00:00:00:09", Profile: "kiosk"}, BootEvent{Phase: "script", Outcome: "ok"})
	if err != nil {
		t.Fatalf("a new boot on the copy: %v", err)
	}
	if max := before["boots"][len(before["boots"])-1]["id"].(int64); b.ID <= max {
		t.Errorf("new boot id %d, copied ids up to %d", b.ID, max)
	}
	// And back, into a new SQLite file.
	back, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if _, err := Copy(ctx, dst, back, false); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dump(t, dst), dump(t, back)); diff != "" {
		t.Errorf("rows (-postgres +sqlite):\n%s", diff)
	}
}
