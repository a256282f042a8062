package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/sitetls"
)

func tlsCmd(sio stdio) *cobra.Command {
	c := group("tls", "the server's HTTPS: the site CA machines trust")
	var data, conf string
	var mk bool
	ca := &cobra.Command{
		Use:   "ca (--data DIR | --config FILE)",
		Short: "print the site CA certificate (PEM), to give to mkimage initramfs --ca or to other clients",
		Long: `Prints the certificate of the site CA the server made in its data directory
(DATA/tls/ca.pem) at its first start with tls-listen: what the initramfs
carries (overboot mkimage initramfs --ca FILE, or --store DATA takes it
itself) and what other clients of the server's HTTPS (curl --cacert) trust.
--make makes the CA when there is none yet (as the server would), so the
initramfs can be built before the server first starts.

With tls-cert in the configuration the server presents the site's own
certificate: its CA is the site's, not printed here.`,
		Args: exactArgs(0, "no arguments (flags only)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (data == "") == (conf == "") {
				return usagef(cmd, "give --data DIR or --config FILE")
			}
			if conf != "" {
				cfg, err := config.Load(conf)
				if err != nil {
					return err
				}
				if cfg.TLSCert != "" {
					return fmt.Errorf("tls ca: %s has tls-cert: the server presents the site's own certificate %s; give its CA to mkimage initramfs --ca", conf, cfg.TLSCert)
				}
				data = cfg.Data
			}
			p := sitetls.CAPath(data)
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) && mk {
				if _, _, err = (&sitetls.Site{Dir: filepath.Dir(p)}).CA(); err != nil {
					return fmt.Errorf("tls ca: %w", err)
				}
				fmt.Fprintf(sio.errOut, "overboot: made the site CA in %s\n", filepath.Dir(p))
				b, err = os.ReadFile(p)
			}
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("tls ca: no site CA in %s yet: the server makes it at its first start with tls-listen (or give --make)", filepath.Dir(p))
			}
			if err != nil {
				return fmt.Errorf("tls ca: %w", err)
			}
			if _, err := sitetls.ParseCert(b); err != nil {
				return fmt.Errorf("tls ca: %s: %w", p, err)
			}
			_, err = sio.out.Write(b)
			return err
		},
	}
	ca.Flags().StringVar(&data, "data", "", "the server's data `directory`")
	ca.Flags().StringVar(&conf, "config", "", "the server's configuration `file` (its data directory)")
	ca.Flags().BoolVar(&mk, "make", false, "make the site CA when there is none yet")
	ca.MarkFlagDirname("data")
	c.AddCommand(ca)
	return c
}
