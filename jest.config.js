/** One Jest project per test tier (STYLE.md B6). Type checking is `npm run lint:types`' job. */
const transform = { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] };
const tier = (name, extra = {}) => ({
  displayName: name,
  testEnvironment: 'node',
  transform,
  testMatch: [`<rootDir>/test/${name}/**/*.test.ts`],
  ...extra,
});

module.exports = {
  projects: [
    tier('unit', { setupFilesAfterEnv: ['<rootDir>/test/harness/jest/timeout-unit.js'] }),
    tier('contract', { setupFilesAfterEnv: ['<rootDir>/test/harness/jest/timeout-contract.js'] }),
    tier('integration', { setupFilesAfterEnv: ['<rootDir>/test/harness/jest/timeout-integration.js'] }),
    tier('nomad', {
      setupFilesAfterEnv: ['<rootDir>/test/harness/jest/timeout-nomad.js'],
      globalSetup: '<rootDir>/test/harness/jest/nomad-global-setup.js',
      globalTeardown: '<rootDir>/test/harness/jest/nomad-global-teardown.js',
    }),
  ],
};
