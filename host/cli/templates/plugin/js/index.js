// `{{name}}`: a QPF extractor plugin. It writes `hello.txt` with the schema's name and the keys of
// its input; replace `extract` with your generator (npm packages in package.json are bundled).

import { ExtractError, definePlugin, file } from '@qpf/sdk';

export const { info, extract } = definePlugin({
  name: '{{name}}',
  version: '0.1.0',
  description: 'Writes a greeting per schema.',
  extract(request) {
    if (request.input === null || typeof request.input !== 'object' || Array.isArray(request.input)) {
      throw new ExtractError('the input must be an object');
    }
    const keys = Object.keys(request.input).sort().join(', ');
    return [file('hello.txt', `hello, ${request.schema.name}\ninput keys: ${keys}\n`)];
  },
});
