import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'data/', 'demo/', 'coverage/', '.demo/', 'bench/out/', 'scratch/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  {
    // the dashboard: browser modules, no Node globals
    files: ['src/admin/assets/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'document', 'window', 'fetch', 'history', 'location', 'URL', 'URLSearchParams', 'FormData', 'Intl', 'setTimeout',
          'clearTimeout', 'navigator', 'HTMLElement', 'Element', 'Event', 'CustomEvent', 'Blob', 'console', 'atob',
        ].map((name) => [name, 'readonly']).concat([['process', 'off']]),
      ),
    },
  },
);
