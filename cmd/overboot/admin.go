package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

func table(w io.Writer, head string, rows func(tw *tabwriter.Writer)) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, head)
	rows(tw)
	tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func machineCmd(sio stdio) *cobra.Command {
	var f clientFlags
	c := group("machine", "machines: list, show, approve, reset, rotate, delete")
	f.add(c)
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "ls", Short: "list machines with their latest boot", Args: exactArgs(0, "no arguments")},
		fixedPath("/machines"), func(w io.Writer, ms []api.MachineView) {
			table(w, "MAC\tPROFILE\tENROLMENT\tADDRESS\tPINNED\tPHASE\tOUTCOME\tUSER\tSEEN\tCONFLICTS", func(tw *tabwriter.Writer) {
				for _, m := range ms {
					phase, outcome, user, pinned := "-", "-", "", "-"
					if b := m.Latest; b != nil {
						phase, outcome, user = b.Phase, b.Outcome, b.User
					}
					if m.Pinned != "" {
						pinned = m.Pinned
					}
					conflicts := "-"
					if len(m.Conflicts) > 0 {
						conflicts = fmt.Sprint(len(m.Conflicts))
					}
					seen := ago(m.Seen)
					if m.NeverBooted {
						seen = "never (configured)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.MAC, cmp.Or(m.Profile, "-"), m.Enrolment, cmp.Or(m.Address, "-"), pinned, phase, outcome, user, seen, conflicts)
				}
			})
		}))
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "show MAC", Short: "a machine with its boot history, latest boot's events and disks", Args: exactArgs(1, "a MAC")},
		macPath("/machines/", ""), func(w io.Writer, d api.MachineDetail) {
			fmt.Fprintf(w, "machine %s  profile %s  address %s  host %s\n\n", d.MAC, d.Profile, d.Address, d.Hostname)
			if len(d.Admissions) > 0 {
				table(w, "ADMITTED TO\tPOLICY\tPINNED\tGRANTED\tSEEN", func(tw *tabwriter.Writer) {
					for _, a := range d.Admissions {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Profile, a.Policy, cmp.Or(a.Address, "-"), ago(a.Granted), ago(a.Seen))
					}
				})
				fmt.Fprintln(w)
			}
			if len(d.Requests) > 0 {
				printRequests(w, d.Requests)
				fmt.Fprintln(w)
			}
			table(w, "BOOT\tSTARTED\tUSER\tPHASE\tOUTCOME\tMESSAGE", func(tw *tabwriter.Writer) {
				for _, b := range d.Boots {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", b.ID, ago(b.Started), b.User, b.Phase, b.Outcome, b.Message)
				}
			})
			fmt.Fprintln(w)
			printEvents(w, d.Events)
			for _, k := range d.Disks {
				fmt.Fprintf(w, "\ndisk %d: %s, %d bytes, %s\n", k.ID, k.Kind, k.Size, k.Path)
			}
		}))
	var ex struct{ uuid, hostname, arch, platform, ip string }
	explain := getCmd(&f, sio, &cobra.Command{Use: "explain MAC", Short: "which profile the machine boots and why (the rule and its FILE:LINE)", Args: exactArgs(1, "a MAC")},
		func(c *cobra.Command, args []string) (string, error) {
			path, err := macPath("/machines/", "/explain")(c, args)
			if err != nil {
				return "", err
			}
			q := url.Values{}
			for k, v := range map[string]string{"uuid": ex.uuid, "hostname": ex.hostname, "arch": ex.arch, "platform": ex.platform, "ip": ex.ip} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			return path, nil
		},
		func(w io.Writer, e api.Explanation) {
			fmt.Fprintf(w, "%s: %s (enroll = %s)\n", e.MAC, e.Because, e.Enroll)
		})
	explain.Flags().StringVar(&ex.uuid, "uuid", "", "the SMBIOS UUID its boot reports")
	explain.Flags().StringVar(&ex.hostname, "hostname", "", "the host name its boot reports (DHCP)")
	explain.Flags().StringVar(&ex.arch, "arch", "", "iPXE's ${buildarch}: i386, x86_64, arm64")
	explain.Flags().StringVar(&ex.platform, "platform", "", "iPXE's ${platform}: pcbios or efi")
	explain.Flags().StringVar(&ex.ip, "ip", "", "the address it boots from (default: the last one seen)")
	c.AddCommand(explain)
	var ap api.ApproveRequest
	approve := apiCmd(&f, sio, &cobra.Command{
		Use:   "approve MAC",
		Short: "admit a machine to the profile it asked for (enroll = approve), or its TPM (enroll = tpm)",
		Long: `Admit a machine that waits for approval (enroll = approve) to the profile
it asked for, pinned to the address the request came from: it boots from
there only. Requests are kept per address and profile; with several, say
which with --address (and --profile): the command lists them and approves
none. Approving forgets the machine's secrets for that profile (its CHAP
secret, its SSH host keys) and ends its sessions: its next boot gets new
ones. A MAC address names a machine, it proves nothing: check the address
(overboot machine show MAC lists the requests) before you approve.

Under enroll = tpm the machine is its TPM: approving pins the endorsement
key (EK) that waits (the status page and overboot machine ls show it),
and its next attested boot records its firmware baseline. Compare the
fingerprint with the machine's own and name it with --ek, so that an EK
someone else put in its place meanwhile is not the one approved. --ek also
approves the last EK refused under the MAC (the machine's TPM was
replaced), or the pinned one again (after a firmware update: only the
baseline is recorded again).`,
		Args: exactArgs(1, "a MAC")},
		func(c *cobra.Command, args []string) (apiRequest, error) {
			p, err := macPath("/machines/", "/approve")(c, args)
			return apiRequest{http.MethodPost, p, ap}, err
		},
		func(w io.Writer, _ []string, out api.Approval) {
			if out.TPM != nil {
				fmt.Fprintf(w, "%s: TPM EK %s approved; its next boot records its firmware baseline\n", out.MAC, out.TPM.EK)
				return
			}
			fmt.Fprintf(w, "%s: approved for profile %s at %s; its secrets for that profile are new at its next boot\n", out.MAC, out.Profile, out.Address)
		})
	approve.Flags().StringVar(&ap.Address, "address", "", "approve the request from this `IP` address")
	approve.Flags().StringVar(&ap.Profile, "profile", "", "approve the request for this `profile`")
	approve.Flags().StringVar(&ap.EK, "ek", "", "enroll = tpm: approve the TPM with this EK `fingerprint` (sha256:HEX)")
	c.AddCommand(approve)
	for _, a := range []struct{ name, short, method, path string }{
		{"reset", "end the machine's sessions and remove its private disks (next boot starts blank)", http.MethodPost, "/reset"},
		{"rotate", "give the machine a new CHAP secret and end its sessions", http.MethodPost, "/rotate"},
		{"delete", "end its sessions, remove its disks and forget it", http.MethodDelete, ""},
	} {
		c.AddCommand(apiCmd(&f, sio, &cobra.Command{Use: a.name + " MAC", Short: a.short, Args: exactArgs(1, "a MAC")},
			func(c *cobra.Command, args []string) (apiRequest, error) {
				p, err := macPath("/machines/", a.path)(c, args)
				return apiRequest{a.method, p, nil}, err
			},
			func(w io.Writer, args []string, _ json.RawMessage) { fmt.Fprintf(w, "%s: %s done\n", args[0], a.name) }))
	}
	// The commands that take a MAC complete it from the server.
	completeSubcommands(c, &f, machineMACs, "ls")
	return c
}

func printRequests(w io.Writer, rs []state.Request) {
	table(w, "REQUEST FOR\tFROM\tHOST\tASKED\tFIRST\tLAST\tNOTE", func(tw *tabwriter.Writer) {
		for _, q := range rs {
			note := "waits for approval"
			if q.Conflict {
				note = "refused: approved at another address"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", q.Profile, q.Address, cmp.Or(q.Hostname, "-"), q.Asked, ago(q.First), ago(q.Seen), note)
		}
	})
}

func printEvents(w io.Writer, ev []state.BootEvent) {
	table(w, "AT\tSOURCE\tPHASE\tOUTCOME\tSECONDS\tMESSAGE", func(tw *tabwriter.Writer) {
		for _, e := range ev {
			secs := ""
			if e.Seconds > 0 {
				secs = fmt.Sprintf("%.3f", e.Seconds)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Local().Format("15:04:05.000"), e.Source, e.Phase, e.Outcome, secs, e.Message)
		}
	})
}

// readPassword reads a new password: from the terminal twice without echo,
// or one line from stdin with --password-stdin.
func readPassword(sio stdio, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(sio.in).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("read the password from stdin: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	f, ok := sio.in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usageError{"stdin is not a terminal: give the password on stdin with --password-stdin"}
	}
	fmt.Fprint(sio.errOut, "password: ")
	p1, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(sio.errOut)
	if err != nil {
		return "", err
	}
	fmt.Fprint(sio.errOut, "again: ")
	p2, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(sio.errOut)
	if err != nil {
		return "", err
	}
	if string(p1) != string(p2) {
		return "", fmt.Errorf("the passwords differ")
	}
	return string(p1), nil
}

func userCmd(sio stdio) *cobra.Command {
	var f clientFlags
	var fromStdin bool
	c := group("user", "users who log in at a boot menu (enroll = login) and get their own disk")
	f.add(c)
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "ls", Short: "list users and their disks", Args: exactArgs(0, "no arguments")},
		fixedPath("/users"), func(w io.Writer, us []api.UserView) {
			table(w, "USER\tCREATED\tDISKS", func(tw *tabwriter.Writer) {
				for _, u := range us {
					var ds []string
					for _, k := range u.Disks {
						ds = append(ds, fmt.Sprintf("%d (%s, %s)", k.ID, k.Profile, k.Kind))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, ago(u.Created), strings.Join(ds, ", "))
				}
			})
		}))
	add := &cobra.Command{
		Use: "add NAME", Short: "add a user (asks for the password, or reads it with --password-stdin)", Args: exactArgs(1, "a user name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := enroll.CheckUserName(args[0]); err != nil {
				return usagef(cmd, "%v", err)
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			pw, err := readPassword(sio, fromStdin)
			if err != nil {
				return err
			}
			if err := enroll.CheckNewPassword(pw); err != nil {
				return usagef(cmd, "%v", err)
			}
			var u state.User
			if err := cl.do(cmd.Context(), http.MethodPost, "/users", api.UserRequest{Name: args[0], Password: pw}, &u); err != nil {
				return fmt.Errorf("user add %s: %w", args[0], err)
			}
			return f.print(sio, u, func(w io.Writer) { fmt.Fprintf(w, "user %s added\n", u.Name) })
		},
	}
	passwd := &cobra.Command{
		Use: "passwd NAME", Short: "set a user's password", Args: exactArgs(1, "a user name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			pw, err := readPassword(sio, fromStdin)
			if err != nil {
				return err
			}
			if err := enroll.CheckNewPassword(pw); err != nil {
				return usagef(cmd, "%v", err)
			}
			if err := cl.do(cmd.Context(), http.MethodPut, "/users/"+args[0]+"/password", api.UserRequest{Password: pw}, nil); err != nil {
				return fmt.Errorf("user passwd %s: %w", args[0], err)
			}
			fmt.Fprintf(sio.out, "password of %s changed\n", args[0])
			return nil
		},
	}
	for _, sc := range []*cobra.Command{add, passwd} {
		sc.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of stdin")
		c.AddCommand(sc)
	}
	f.addOutput(add)
	for _, a := range []struct{ name, short, method, path string }{
		{"reset", "end the user's sessions and remove their disks (their next login starts blank)", http.MethodPost, "/reset"},
		{"del", "end the user's sessions, remove their disks and the user", http.MethodDelete, ""},
	} {
		c.AddCommand(&cobra.Command{
			Use: a.name + " NAME", Short: a.short, Args: exactArgs(1, "a user name"),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := f.client()
				if err != nil {
					return err
				}
				if err := cl.do(cmd.Context(), a.method, "/users/"+args[0]+a.path, nil, nil); err != nil {
					return fmt.Errorf("user %s %s: %w", a.name, args[0], err)
				}
				fmt.Fprintf(sio.out, "%s: %s done\n", args[0], a.name)
				return nil
			},
		})
	}
	// The commands that take an existing user complete the name.
	completeSubcommands(c, &f, userNames, "ls", "add")
	return c
}

func imageCmd(sio stdio) *cobra.Command {
	var f clientFlags
	c := group("image", "image names: publish, list, history, rollback (a publish takes effect at the next boot)")
	f.add(c)
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "ls", Short: "list names at their current version", Args: exactArgs(0, "no arguments")},
		fixedPath("/images"), printImages))
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "history NAME", Short: "a name's versions, newest first", Args: exactArgs(1, "an image name")},
		argPath("/images/", ""), printImages))
	var kind, note string
	pub := &cobra.Command{
		Use:   "publish NAME FILE|sha256:HEX",
		Short: "point NAME at a file (uploaded) or a blob already stored, as its next version",
		Args:  exactArgs(2, "a name and a FILE or sha256:HEX"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			digest := args[1]
			if !strings.HasPrefix(digest, "sha256:") {
				file, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer file.Close()
				var b api.BlobView
				if err := cl.do(cmd.Context(), http.MethodPost, "/blobs", file, &b); err != nil {
					return fmt.Errorf("upload %s: %w", args[1], err)
				}
				digest = b.Digest
			} else if _, err := boot.ParseDigest(digest); err != nil {
				return usagef(cmd, "%v", err)
			}
			var im state.Image
			if err := cl.do(cmd.Context(), http.MethodPost, "/images", api.PublishRequest{Name: args[0], Digest: digest, Kind: kind, Note: note}, &im); err != nil {
				return fmt.Errorf("image publish %s: %w", args[0], err)
			}
			return f.print(sio, im, func(w io.Writer) {
				fmt.Fprintf(w, "%s version %d: %s (%s, %d bytes)\n", im.Name, im.Version, im.Digest, im.Kind, im.Size)
			})
		},
	}
	pub.Flags().StringVar(&kind, "kind", "", "root, kernel, initramfs or disk (default: what its content is; a raw disk image must say disk); the content must be of that kind")
	pub.Flags().StringVar(&note, "note", "", "a note kept in the history")
	f.addOutput(pub)
	c.AddCommand(pub)
	var to int
	rb := apiCmd(&f, sio, &cobra.Command{Use: "rollback NAME", Short: "publish an earlier version's blob again (default: the version before the current one)", Args: exactArgs(1, "an image name")},
		func(c *cobra.Command, args []string) (apiRequest, error) {
			p, err := argPath("/images/", "/rollback")(c, args)
			return apiRequest{http.MethodPost, p, api.RollbackRequest{Version: to}}, err
		},
		func(w io.Writer, _ []string, im state.Image) {
			fmt.Fprintf(w, "%s version %d: %s (%s)\n", im.Name, im.Version, im.Digest, im.Note)
		})
	rb.Flags().IntVar(&to, "to", 0, "the `version` to go back to")
	c.AddCommand(rb, imageImportCmd(sio, &f))
	// The commands that take a name complete it from the server.
	completeSubcommands(c, &f, imageNames, "ls")
	return c
}

func printImages(w io.Writer, ims []state.Image) {
	table(w, "NAME\tVERSION\tKIND\tDIGEST\tSIZE\tPUBLISHED\tNOTE", func(tw *tabwriter.Writer) {
		for _, m := range ims {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\n", m.Name, m.Version, m.Kind, m.Digest, m.Size, ago(m.Published), m.Note)
		}
	})
}

func diskCmd(sio stdio) *cobra.Command {
	var f clientFlags
	c := group("disk", "private disks: whose each is")
	f.add(c)
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "ls", Short: "list disks", Args: exactArgs(0, "no arguments")},
		fixedPath("/disks"), func(w io.Writer, ks []state.Disk) {
			table(w, "ID\tOWNER\tPROFILE\tKIND\tSIZE\tHOME\tSTATUS\tPATH", func(tw *tabwriter.Writer) {
				for _, k := range ks {
					status := k.Status
					if k.Status == state.DiskMoving {
						status += " to " + k.MoveTo
					}
					fmt.Fprintf(tw, "%d\t%s %s\t%s\t%s\t%d\t%s\t%s\t%s\n", k.ID, k.OwnerKind, k.Owner, k.Profile, k.Kind, k.Size, cmp.Or(k.Home, "-"), status, k.Path)
				}
			})
		}))
	c.AddCommand(&cobra.Command{
		Use: "rm ID", Short: "end the disk's sessions and remove it", Args: exactArgs(1, "a disk ID (overboot disk ls)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			if err := cl.do(cmd.Context(), http.MethodDelete, "/disks/"+args[0], nil, nil); err != nil {
				return fmt.Errorf("disk rm %s: %w", args[0], err)
			}
			fmt.Fprintf(sio.out, "disk %s removed\n", args[0])
			return nil
		},
	})
	c.AddCommand(diskMoveCmd(&f, sio))
	return c
}

func bootCmd(sio stdio) *cobra.Command {
	var f clientFlags
	var mac string
	var limit int
	c := group("boot", "boots as the server saw them: its steps and the agents' phase reports")
	f.add(c)
	ls := getCmd(&f, sio, &cobra.Command{Use: "ls", Short: "list boots, newest first", Args: exactArgs(0, "no arguments")},
		func(*cobra.Command, []string) (string, error) {
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if mac != "" {
				q.Set("mac", mac)
			}
			return "/boots?" + q.Encode(), nil
		}, func(w io.Writer, bs []state.Boot) {
			table(w, "BOOT\tMAC\tPROFILE\tUSER\tSTARTED\tPHASE\tOUTCOME\tMESSAGE", func(tw *tabwriter.Writer) {
				for _, b := range bs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.MAC, b.Profile, b.User, ago(b.Started), b.Phase, b.Outcome, b.Message)
				}
			})
		})
	ls.Flags().StringVar(&mac, "mac", "", "only this machine's")
	ls.RegisterFlagCompletionFunc("mac", completeFlag(&f, machineMACs))
	ls.Flags().IntVar(&limit, "limit", 50, "at most this many")
	c.AddCommand(ls)
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "show ID", Short: "one boot with its events", Args: exactArgs(1, "a boot ID")},
		argPath("/boots/", ""), func(w io.Writer, b api.BootDetail) {
			fmt.Fprintf(w, "boot %d of %s, profile %s, user %s, from %s, image %s\n\n", b.ID, b.MAC, b.Profile, b.User, b.Address, b.Image)
			printEvents(w, b.Events)
		}))
	return c
}

func tokenCmd(sio stdio) *cobra.Command {
	var f clientFlags
	var data, scope, outFile string
	c := group("token", "admin API tokens (stored hashed; shown once when created)")
	f.add(c)
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "make an admin token; with --data DIR, in the server's data directory itself (the first token)",
		Long: `Make an admin token and print it (or write it to --out FILE, mode 0600):
the only time it is shown. Its scope says what it may do: read (list, show,
explain, the status page), operate (read, and approve, reset, rotate and
delete machines, publish and roll back images, gc), admin (everything:
users, tokens, the backup with every CHAP secret). With --data DIR the token
is made in the server's data directory itself, without a running server
(the first token).`,
		Args: exactArgs(1, "a name for the token, e.g. who holds it"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := enroll.ParseScope(scope)
			if err != nil {
				return usagef(cmd, "--%v", err)
			}
			// The file first: a token is never made that cannot be kept.
			out := sio.out
			if outFile != "" {
				fh, err := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return fmt.Errorf("token create: %w (not overwriting a file)", err)
				}
				defer fh.Close()
				out = fh
			}
			tok, err := newToken(cmd, &f, data, args[0], sc)
			if err != nil {
				if outFile != "" {
					os.Remove(outFile)
				}
				return err
			}
			if _, err := fmt.Fprintln(out, tok); err != nil {
				return err
			}
			if outFile != "" {
				fmt.Fprintf(sio.errOut, "token %s (scope %s) written to %s\n", args[0], sc, outFile)
			}
			return nil
		},
	}
	create.Flags().StringVar(&scope, "scope", string(enroll.ScopeAdmin), "what the token may do: read, operate or admin")
	create.Flags().StringVar(&outFile, "out", "", "write the token to this new `file` (mode 0600) instead of stdout")
	create.Flags().StringVar(&data, "data", "", "the server's data `directory` (write access needed): make the token in its store, without a running server (DIR/state.db, or the PostgreSQL store of the server's configuration when its data is DIR)")
	c.AddCommand(create)
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "ls", Short: "list tokens (their IDs, names and scopes; never the secrets)", Args: exactArgs(0, "no arguments")},
		fixedPath("/tokens"), func(w io.Writer, ts []state.APIToken) {
			table(w, "ID\tNAME\tSCOPE\tCREATED\tLAST USED", func(tw *tabwriter.Writer) {
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Scope, ago(t.Created), ago(t.Used))
				}
			})
		}))
	c.AddCommand(&cobra.Command{
		Use: "revoke ID", Short: "revoke a token", Args: exactArgs(1, "a token ID (overboot token ls)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			if err := cl.do(cmd.Context(), http.MethodDelete, "/tokens/"+args[0], nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(sio.out, "token %s revoked\n", args[0])
			return nil
		},
	})
	return c
}

func gcCmd(sio stdio) *cobra.Command {
	var f clientFlags
	var grace string
	var dry bool
	c := apiCmd(&f, sio, &cobra.Command{Use: "gc", Short: "remove blobs that no image name's history, no profile and no recent boot refers to", Args: exactArgs(0, "no arguments")},
		func(*cobra.Command, []string) (apiRequest, error) {
			return apiRequest{http.MethodPost, "/gc", api.GCRequest{Grace: grace, DryRun: dry}}, nil
		},
		func(w io.Writer, _ []string, res api.GCResult) {
			verb := "removed"
			if dry {
				verb = "would remove"
			}
			for _, d := range res.Removed {
				fmt.Fprintf(w, "%s %s\n", verb, d)
			}
			fmt.Fprintf(w, "%s %d blobs (%d bytes), kept %d\n", verb, len(res.Removed), res.Freed, res.Kept)
			for _, d := range res.TreesRemoved {
				fmt.Fprintf(w, "%s the modules tree of %s (driver segments)\n", verb, d)
			}
		})
	f.add(c)
	c.Flags().StringVar(&grace, "grace", "24h", "keep blobs younger than this, and blobs of boots seen within it")
	c.Flags().BoolVar(&dry, "dry-run", false, "say what would go, remove nothing")
	return c
}

func backupCmd(sio stdio) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "backup FILE",
		Short: "write a consistent copy of the running server's state store to FILE (0600)",
		Args:  exactArgs(1, "a FILE to write"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := args[0]
			if _, err := os.Stat(dst); err == nil {
				return fmt.Errorf("backup: %s exists: not overwriting it", dst)
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			tmp := dst + ".partial"
			out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			defer os.Remove(tmp)
			err = cl.do(cmd.Context(), http.MethodGet, "/backup", nil, out)
			if err == nil {
				err = out.Sync()
			}
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			if err := os.Rename(tmp, dst); err != nil {
				return err
			}
			fi, _ := os.Stat(dst)
			fmt.Fprintf(sio.out, "%s: %d bytes\n", dst, fi.Size())
			return nil
		},
	}
	f.add(c)
	return c
}

// newToken makes a token in the data directory, or through the API.
func newToken(cmd *cobra.Command, f *clientFlags, data, name string, scope enroll.Scope) (string, error) {
	if data != "" {
		db, err := localStore(cmd.Context(), data, f.config)
		if err != nil {
			return "", err
		}
		defer db.Close()
		tok, _, err := enroll.NewAPIToken(cmd.Context(), db, name, scope)
		return tok, err
	}
	cl, err := f.client()
	if err != nil {
		return "", err
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := cl.do(cmd.Context(), http.MethodPost, "/tokens", api.TokenRequest{Name: name, Scope: string(scope)}, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}
