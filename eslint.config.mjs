import tseslint from 'typescript-eslint';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';

export default tseslint.config(
  {
    ignores: [
      'proto/gen/**',
      'dist/**',
      'node_modules/**',
      '.venv/**',
      'forecaster/training/**',
      '**/*.js',
      '**/*.mjs',
    ],
  },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { 'import-x': importX },
    // The legacy resolver crashes on packages with conditional exports (lru-cache): use import-x's own.
    settings: { 'import-x/resolver-next': [createNodeResolver()] },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'import-x/no-cycle': 'error',
      'no-restricted-syntax': [
        'error',
        {
          selector:
            'CallExpression[callee.object.name=/^(it|test|describe)$/][callee.property.name=/^(only|skip|todo)$/]',
          message: 'Committed tests never use .only, .skip or .todo (STYLE.md B6).',
        },
      ],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/plugin/src/**'], message: 'Components share only common/ and proto/ (STYLE.md B2).' },
          ],
        },
      ],
    },
  },
  {
    files: ['sidecar/src/**', 'forecaster/src/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: ['**/plugin/src/**', '../../plugin/**', '**/local/**', '../../local/**'] },
      ],
    },
  },
  {
    // Local mode drives the components from outside, as Nomad does; none of them depends on it.
    files: ['plugin/src/**', 'common/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/local/**', '../../local/**'],
              message: 'Local mode is a client of the components (STYLE.md B2).',
            },
            { group: ['**/plugin/src/**'], message: 'Components share only common/ and proto/ (STYLE.md B2).' },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/unbound-method': 'off',
      // Fakes implement async interfaces without awaiting anything.
      '@typescript-eslint/require-await': 'off',
    },
  },
);
