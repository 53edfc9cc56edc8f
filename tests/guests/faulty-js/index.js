// A plugin that fails on purpose, by `input.mode`: `throw-object` throws a plain object,
// `throw-string` a string, `bad-path` returns a file outside the output folder. The host must
// report each clearly, never as a trap.
import { definePlugin, file } from '@qpf/sdk';

export const { info, extract } = definePlugin({
  name: 'faulty-js',
  version: '0.1.0',
  description: 'Fails on purpose.',
  extract(request) {
    switch (request.input.mode) {
      case 'throw-object':
        throw { code: 7, reason: 'an object, not an Error' };
      case 'throw-string':
        throw 'a bare string';
      case 'bad-path':
        return [file('/etc/escape.txt', 'out of bounds\n')];
      default:
        return [file('ok.txt', 'ok\n')];
    }
  },
});
