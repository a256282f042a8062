package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/mkimage/initramfs"
)

func inspectCmd(sio stdio) *cobra.Command {
	var long bool
	c := &cobra.Command{
		Use:   "inspect [-l] FILE...",
		Short: "list the contents of an initramfs (several segments, any compression)",
		Long: `Lists an initramfs as the kernel unpacks it: each segment (a cpio archive,
plain or compressed with gzip, zstd, xz or bzip2; several may be
concatenated, e.g. microcode first) with its offset and entries.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errArgs(c, "one or more FILEs")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, files []string) error {
			var errs []error
			for _, name := range files {
				if err := inspectFile(name, long, sio.out); err != nil {
					errs = append(errs, fmt.Errorf("inspect %s: %w", name, err))
				}
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVarP(&long, "long", "l", false, "list every entry (mode, owner, size, name), not only the segments")
	return c
}

func inspectFile(name string, long bool, w io.Writer) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	segs, err := initramfs.List(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %d segment(s)\n", name, len(segs))
	for i, s := range segs {
		fmt.Fprintf(w, "segment %d at offset %d: %s, %d bytes, %d entries\n", i+1, s.Offset, s.Compression, s.Length, len(s.Entries))
		if !long {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', tabwriter.AlignRight)
		for _, e := range s.Entries {
			size := fmt.Sprint(e.Size)
			if e.Type() == 'c' || e.Type() == 'b' {
				size = fmt.Sprintf("%d, %d", e.Major, e.Minor)
			}
			link := ""
			if e.Link != "" {
				link = " -> " + e.Link
			}
			fmt.Fprintf(tw, "  %c%s\t %d/%d\t %s\t %s%s\t\n", e.Type(), permString(e.Mode), e.UID, e.GID, size, e.Name, link)
		}
		tw.Flush()
	}
	return nil
}

func permString(mode uint32) string {
	const rwx = "rwxrwxrwx"
	b := []byte("---------")
	for i := range 9 {
		if mode&(1<<(8-i)) != 0 {
			b[i] = rwx[i]
		}
	}
	if mode&0o4000 != 0 {
		b[2] = 's'
	}
	if mode&0o1000 != 0 {
		b[8] = 't'
	}
	return string(b)
}
