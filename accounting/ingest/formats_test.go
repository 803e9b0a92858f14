package ingest

import (
	"slices"
	"testing"

	"github.com/collabsync/collabsync/internal/config"
)

func TestConfigKnowsEveryFormat(t *testing.T) {
	if !slices.Equal(FormatNames(), config.AccountingFormats) {
		t.Errorf("decoders %v, config accepts %v", FormatNames(), config.AccountingFormats)
	}
}
