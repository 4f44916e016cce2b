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
    tier('unit'),
    tier('contract', { testTimeout: 120000 }),
    tier('integration', { testTimeout: 300000 }),
    tier('nomad', { testTimeout: 900000 }),
  ],
};
