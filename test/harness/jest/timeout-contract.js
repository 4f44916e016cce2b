// Per-tier timeout: Jest reads testTimeout only globally, so each tier sets its own here.
jest.setTimeout(120000);
