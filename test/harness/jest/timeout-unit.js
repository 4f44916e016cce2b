// Per-tier timeout: Jest reads testTimeout only globally, so each tier sets its own here. Unit tests are fast,
// but on a loaded machine (2 cores, a build beside them) Jest's 5 s default failed a correct chunker test.
jest.setTimeout(60000);
