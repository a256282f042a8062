package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/drivers"
	"github.com/overboot/overboot/server/ipxe"
	"github.com/overboot/overboot/server/pci"
	"github.com/overboot/overboot/vmtest"
)

// The drivers section measures the per-machine driver segment
// (server/drivers): the extra initrd the server builds when the base
// initramfs lacks the booting NIC's driver. For each NIC: the segment's
// size, what went in (modules, firmware shipped and missing), the time
// the server takes to make it the first time (a fresh blob store:
// nothing built, nothing indexed), a cached lookup, and the first lookup
// after a restart (the index on disk).
//
// The base initramfs is the one vmtest.Build (and so the boot section)
// makes: overboot-init from -build, the host kernel's modules,
// DefaultModules, zstd. A segment is only made for a driver the base
// lacks: DefaultModules has e1000e, so e1000e's segment is measured over
// a base built the same way without it.
//
// The modules come from the host's /lib/modules/RELEASE and the firmware
// from /lib/firmware, as the server takes them (drivers.Segments with
// its defaults). "Cold" means a fresh blob store; the page cache holds
// the module files after the first round.
func driversSection() Section {
	return Section{Name: "drivers", Run: runDrivers}
}

const (
	drvRounds  = 5   // cold builds, each in a fresh blob store
	drvLookups = 200 // cached lookups timed
)

// drvNIC is one NIC measured.
type drvNIC struct {
	driver string // the module that drives it
	id     pci.ID
	what   string
}

var drvNICs = []drvNIC{
	{"e1000e", pci.ID{Vendor: 0x8086, Device: 0x10d3}, "Intel 82574L (QEMU's e1000e)"},
	{"r8169", pci.ID{Vendor: 0x10ec, Device: 0x8168}, "Realtek RTL8168 (the common onboard NIC)"},
}

// drvBase is a base initramfs built for the section.
type drvBase struct {
	name, path string
	sum        initramfs.Summary
}

func runDrivers(ctx context.Context, env *Env) ([]Result, error) {
	_, release, err := vmtest.FindKernel()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(initramfs.DefaultModulesDir, release, "modules.dep")); err != nil {
		return nil, fmt.Errorf("kernel %s's modules: %w (make deps installs linux-image-amd64)", release, err)
	}
	agent := filepath.Join(env.BuildDir, "overboot-init")
	if _, err := os.Stat(agent); err != nil {
		return nil, fmt.Errorf("%w (make build)", err)
	}
	dir := filepath.Join(env.WorkDir, "drivers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fw := initramfs.DefaultFirmwareDir
	nfw := 0
	filepath.WalkDir(fw, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			nfw++
		}
		return nil
	})
	fmt.Fprintf(env.Out, "kernel %s: modules from %s, firmware from %s (%d files); base initramfs as vmtest.Build makes it (overboot-init, DefaultModules, zstd)\n",
		release, filepath.Join(initramfs.DefaultModulesDir, release), fw, nfw)

	// The bases: the default one, and for each NIC whose driver it has,
	// one without that driver.
	build := func(name string, modules []string) (*drvBase, error) {
		b := &drvBase{name: name, path: filepath.Join(dir, "base-"+name+".img")}
		f, err := os.Create(b.path)
		if err != nil {
			return nil, err
		}
		b.sum, err = initramfs.Build(ctx, f, initramfs.Options{Agent: agent, KernelRelease: release, Modules: modules})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("base initramfs %s: %w", name, err)
		}
		fmt.Fprintf(env.Out, "base %s: %.2f MB, %d module files\n", name, float64(b.sum.Compressed)/1e6, len(b.sum.Modules))
		return b, nil
	}
	def, err := build("default", nil)
	if err != nil {
		return nil, err
	}
	var rs []Result
	for _, nic := range drvNICs {
		if ctx.Err() != nil {
			return rs, ctx.Err()
		}
		base := def
		if hasModule(def.sum.Modules, nic.driver) {
			var mods []string
			for _, m := range initramfs.DefaultModules {
				if m != nic.driver {
					mods = append(mods, m)
				}
			}
			if base, err = build("no-"+nic.driver, mods); err != nil {
				return rs, err
			}
			if hasModule(base.sum.Modules, nic.driver) {
				return rs, fmt.Errorf("base without %s still ships it (a dependency of another default module)", nic.driver)
			}
			fmt.Fprintf(env.Out, "  %s is in DefaultModules: its segment is measured over base no-%s (DefaultModules without %s)\n", nic.driver, nic.driver, nic.driver)
		}
		r, err := measureSegment(ctx, env, dir, base, nic)
		rs = append(rs, r...)
		if err != nil {
			return rs, fmt.Errorf("%s: %w", nic.driver, err)
		}
	}
	return rs, nil
}

func hasModule(files []string, name string) bool {
	return slices.ContainsFunc(files, func(f string) bool { return initramfs.ModuleName(f) == name })
}

// measureSegment times drivers.Segments.For for nic over base: drvRounds
// cold builds (each in a fresh blob store, a fresh Segments), cached
// lookups, a lookup after a restart; then the same through the server's
// handler (GET /ipxe with the NIC in the query).
func measureSegment(ctx context.Context, env *Env, dir string, base *drvBase, nic drvNIC) ([]Result, error) {
	var cold, build, restart []time.Duration
	var seg drivers.Segment
	var cached []time.Duration
	for i := range drvRounds {
		store, err := os.MkdirTemp(dir, "store-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(store)
		st, err := blobstore.Open(store)
		if err != nil {
			return nil, err
		}
		d, err := ingest(st, base.path)
		if err != nil {
			return nil, err
		}
		s := &drivers.Segments{Blobs: st}
		t0 := time.Now()
		c, err := s.For(ctx, d, nic.id)
		el := time.Since(t0)
		if err != nil {
			return nil, err
		}
		if c.Segment == nil || !c.Built {
			return nil, fmt.Errorf("base %s, PCI %s: no segment built (%s)", base.name, nic.id, c.Why)
		}
		if i > 0 && c.Segment.Digest != seg.Digest {
			return nil, fmt.Errorf("round %d built %s, round 0 %s: not reproducible", i, c.Segment.Digest.Short(), seg.Digest.Short())
		}
		seg = *c.Segment
		cold = append(cold, el)
		build = append(build, time.Duration(seg.BuildSeconds*float64(time.Second)))
		// Cached: the same Segments, again and again.
		for range drvLookups {
			t0 := time.Now()
			c, err := s.For(ctx, d, nic.id)
			el := time.Since(t0)
			if err != nil || c.Built || c.Segment == nil || c.Segment.Digest != seg.Digest {
				return nil, fmt.Errorf("cached lookup: %+v, %v", c, err)
			}
			cached = append(cached, el)
		}
		// A restart: a new Segments over the same store.
		s2 := &drivers.Segments{Blobs: st}
		t0 = time.Now()
		c, err = s2.For(ctx, d, nic.id)
		el = time.Since(t0)
		if err != nil || c.Built || c.Segment == nil || c.Segment.Digest != seg.Digest {
			return nil, fmt.Errorf("lookup after a restart: %+v, %v", c, err)
		}
		restart = append(restart, el)
	}
	fwNote := "no firmware named"
	switch {
	case len(seg.Firmware) > 0 && len(seg.MissingFirmware) > 0:
		fwNote = fmt.Sprintf("firmware: %d files shipped, %d missing", len(seg.Firmware), len(seg.MissingFirmware))
	case len(seg.Firmware) > 0:
		fwNote = fmt.Sprintf("firmware included: %d files", len(seg.Firmware))
	case len(seg.MissingFirmware) > 0:
		fwNote = fmt.Sprintf("firmware NOT included: %d files named, none in %s", len(seg.MissingFirmware), initramfs.DefaultFirmwareDir)
	}
	fmt.Fprintf(env.Out, "%s (%s, PCI %s) over base %s: segment %s, %d bytes (%.1f KB), digest %s\n",
		nic.driver, nic.what, nic.id, base.name, seg.Name, seg.Size, float64(seg.Size)/1e3, seg.Digest.Short())
	fmt.Fprintf(env.Out, "  modules (load order): %s\n", strings.Join(trimModPaths(seg.Modules), " "))
	fmt.Fprintf(env.Out, "  %s\n", fwNote)
	if len(seg.Firmware) > 0 {
		fmt.Fprintf(env.Out, "  firmware shipped: %s\n", strings.Join(seg.Firmware, " "))
	}
	if len(seg.MissingFirmware) > 0 {
		fmt.Fprintf(env.Out, "  firmware missing: %s\n", strings.Join(seg.MissingFirmware, " "))
	}
	fmt.Fprintf(env.Out, "  first request, fresh blob store (For: base listing, module tree, match, build, store, index), %d rounds: %s ms; of which the build (Segment.BuildSeconds): %s ms\n",
		drvRounds, msList(cold), msList(build))
	fmt.Fprintf(env.Out, "  cached lookup (same Segments), n=%d: p50 %.3f ms, p99 %.3f ms; first lookup after a restart (index on disk, base listing read again): %s ms\n",
		len(cached), pct(cached, 50), pct(cached, 99), msList(restart))

	res := func(metric string, v float64, goal, note string) Result {
		return Result{Section: "drivers", Metric: nic.driver + " " + metric, Ours: v, RefName: "-", Better: "lower", Goal: goal, Note: note}
	}
	rs := []Result{
		res("segment size, KB", float64(seg.Size)/1e3, "report", fmt.Sprintf("%s, %d modules; %s", seg.Name, len(seg.Modules), fwNote)),
		res("first build, ms (median)", ms(median(cold)), "report", fmt.Sprintf("fresh blob store, %d rounds; base %s", drvRounds, base.name)),
		res("  of which the build alone, ms", ms(median(build)), "report", "Segment.BuildSeconds"),
		res("cached lookup p50, ms", pct(cached, 50), "report", fmt.Sprintf("Segments.For again, n=%d", len(cached))),
		res("lookup after a restart, ms (median)", ms(median(restart)), "report", "new Segments, same store: index read"),
	}
	sr, err := serverSegment(ctx, env, dir, base, nic, seg)
	return append(rs, sr...), err
}

func trimModPaths(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = initramfs.ModuleName(p)
	}
	return out
}

func msList(ds []time.Duration) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.1f", ms(d))
	}
	return b.String()
}

func ingest(st *blobstore.Store, path string) (boot.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, _, err := st.Ingest(f)
	return d, err
}

// serverSegment asks an in-process server (a fresh data directory, the
// base as its profile's initramfs) for a kernel script, through its
// handler: a machine with the NIC (the segment is built), another with
// it (cached), and one whose driver is in the base (virtio-net), and
// checks the scripts name the segment, or not.
func serverSegment(ctx context.Context, env *Env, dir string, base *drvBase, nic drvNIC, want drivers.Segment) ([]Result, error) {
	tmp, err := os.MkdirTemp(dir, "server-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for name, body := range map[string]string{"kernel": "BENCH-KERNEL", "root": "BENCH-ROOT-IMAGE"} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\n", filepath.Join(tmp, "kernel"), base.path, filepath.Join(tmp, "root"))
	cfg, err := config.Parse("conf", strings.NewReader(conf))
	if err != nil {
		return nil, err
	}
	cfg.Data = filepath.Join(tmp, "data")
	srv, err := server.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	h := srv.Handler()
	get := func(mac string, id pci.ID) (string, time.Duration, error) {
		c := ipxe.Client{NIC: id}
		c.MAC, _ = boot.ParseMAC(mac)
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1/ipxe?"+c.Query().Encode(), nil)
		req.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(w, req)
		el := time.Since(t0)
		if w.Code != http.StatusOK {
			return "", el, fmt.Errorf("GET %s: %d %s", redact(req.URL.String()), w.Code, tail(w.Body.String(), 5))
		}
		return w.Body.String(), el, nil
	}
	segURL := server.BlobPrefix + want.Digest.Hex()
	first, tFirst, err := get("02:0d:00:00:00:01", nic.id)
	if err != nil {
		return nil, err
	}
	second, tSecond, err := get("02:0d:00:00:00:02", nic.id)
	if err != nil {
		return nil, err
	}
	virtio, tVirtio, err := get("02:0d:00:00:00:03", pci.ID{Vendor: 0x1af4, Device: 0x1000})
	if err != nil {
		return nil, err
	}
	if !strings.Contains(first, segURL) || !strings.Contains(second, segURL) {
		return nil, fmt.Errorf("the kernel script does not load the segment %s:\n%s", want.Digest.Short(), tail(first, 10))
	}
	if strings.Contains(virtio, segURL) {
		return nil, fmt.Errorf("the virtio-net machine's script loads the %s segment", nic.driver)
	}
	fmt.Fprintf(env.Out, "  through the server (in-process, GET /ipxe?mac=..&pcivendor=%04x&pcidevice=%04x, handler timed; the script names the segment): first machine %.1f ms (builds it), second machine %.1f ms (cached); a virtio-net machine (driver in the base) %.1f ms\n",
		nic.id.Vendor, nic.id.Device, ms(tFirst), ms(tSecond), ms(tVirtio))
	res := func(metric string, v float64, note string) Result {
		return Result{Section: "drivers", Metric: nic.driver + " " + metric, Ours: v, RefName: "-", Better: "lower", Goal: "report", Note: note}
	}
	return []Result{
		res("GET /ipxe, segment built, ms", ms(tFirst), "server handler, fresh data dir, one run"),
		res("GET /ipxe, segment cached, ms", ms(tSecond), fmt.Sprintf("another machine; virtio-net (no segment): %.1f ms", ms(tVirtio))),
	}, nil
}
