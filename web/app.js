// The mesh dashboard: live trades and candles per product over Server-Sent Events, a recent-trades
// table, and the signed-in user's tasks. Plain DOM code; every text from the server goes in
// through textContent, never as markup.
'use strict';

(() => {
  const TRADE_ROWS = 50;           // rows kept in each recent-trades table
  const TASK_POLL_MS = 2000;       // task list refresh while signed in
  const MARKETS_POLL_MS = 5000;    // new products and last prices
  const CANDLE_SECONDS = 60;
  const STREAM_RETRY_MS = 5000;    // reconnect after the server refused the event stream
  const PENDING_LIMIT = 1000;      // live trades held while the history loads

  const Charts = window.LightweightCharts;
  const markets = new Map();       // product -> Market
  let token = sessionStorage.getItem('mesh.token');
  let username = sessionStorage.getItem('mesh.username');
  let taskTimer = null;
  let taskRefreshRunning = false;

  // ---- helpers ----

  const $ = (selector, root = document) => root.querySelector(selector);

  function showMessage(text, isError = false) {
    const message = $('#message');
    message.textContent = text;
    message.classList.toggle('error', isError);
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  // Calls the API; resolves to the parsed JSON body (null when empty), rejects with the
  // problem's detail on a non-2xx answer.
  async function api(method, path, body) {
    const headers = {Accept: 'application/json'};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = 'Bearer ' + token;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = new Error((data && (data.detail || data.title)) ||
                              `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // RFC 3339 with up to 9 fractional digits -> seconds since the epoch (fractional).
  function epochSeconds(time) {
    const trimmed = String(time).replace(/(\.\d{3})\d+/, '$1');
    return Date.parse(trimmed) / 1000;
  }

  function clockTime(time) {
    const match = /T(\d\d:\d\d:\d\d(\.\d{1,3})?)/.exec(String(time));
    return match ? match[1] : String(time);
  }

  function chartOptions(timeScale) {
    return {
      autoSize: true,
      layout: {background: {type: 'solid', color: '#131722'}, textColor: '#d1d4dc'},
      grid: {vertLines: {color: '#1f2430'}, horzLines: {color: '#1f2430'}},
      timeScale: {timeVisible: true, ...timeScale},
      rightPriceScale: {borderColor: '#2a2e39'},
    };
  }

  // ---- one product: charts, table, live stream ----

  class Market {
    constructor(product) {
      this.product = product;
      this.root = $('#market-template').content.firstElementChild.cloneNode(true);
      this.root.dataset.product = product;
      $('.product', this.root).textContent = product;
      this.priceElement = $('.price-chart', this.root);
      this.candleElement = $('.candle-chart', this.root);
      this.rows = $('.trade-rows', this.root);
      this.status = $('.connection', this.root);
      $('#markets').appendChild(this.root);

      this.priceChart = Charts.createChart(this.priceElement,
                                             chartOptions({secondsVisible: true, rightOffset: 2}));
      const points = {lineWidth: 1, pointMarkersVisible: true, pointMarkersRadius: 2};
      this.series = {
        buy: this.priceChart.addSeries(Charts.LineSeries, {...points, color: '#26a69a', title: 'buy'}),
        sell: this.priceChart.addSeries(Charts.LineSeries, {...points, color: '#ef5350', title: 'sell'}),
      };
      this.lastTime = {buy: -Infinity, sell: -Infinity};
      this.candleChart = Charts.createChart(
          this.candleElement, chartOptions({secondsVisible: false, rightOffset: 3, barSpacing: 12}));
      this.candles = this.candleChart.addSeries(Charts.CandlestickSeries, {
        upColor: '#26a69a', downColor: '#ef5350', borderVisible: false,
        wickUpColor: '#26a69a', wickDownColor: '#ef5350',
      });
      this.candle = null;        // the newest candle, as plotted
      this.points = 0;
      this.livePoints = 0;
      this.lastTradeId = -Infinity;
      this.pending = [];         // live trades that arrived before the history
      this.historyLoaded = false;

      this.connect();
      this.loadHistory();
    }

    connect() {
      this.source = new EventSource('/v1/stream/markets/' + encodeURIComponent(this.product));
      this.source.onopen = () => this.setStatus('open');
      this.source.onerror = () => {
        if (this.source.readyState !== EventSource.CLOSED) {
          this.setStatus('reconnecting');  // the browser retries by itself
          return;
        }
        // Refused (an error status, say while the server restarts): the browser gave up.
        this.setStatus('closed');
        setTimeout(() => this.connect(), STREAM_RETRY_MS);
      };
      this.source.addEventListener('trade', (event) => {
        const trade = JSON.parse(event.data);
        if (this.historyLoaded) {
          this.addTrade(trade, true);
          return;
        }
        this.pending.push(trade);
        if (this.pending.length > PENDING_LIMIT) this.pending.shift();
      });
      this.source.addEventListener('ticker', (event) => this.showTicker(JSON.parse(event.data)));
    }

    setStatus(state) {
      this.status.dataset.state = state;
      this.status.textContent = state;
    }

    async loadHistory() {
      const product = encodeURIComponent(this.product);
      try {
        const [trades, candles] = await Promise.all([
          api('GET', `/v1/markets/${product}/trades?limit=${TRADE_ROWS}`),
          api('GET', `/v1/markets/${product}/candles?interval=1m`),
        ]);
        const bars = candles.items
          .map((c) => ({
            time: Math.floor(epochSeconds(c.start)),
            open: Number(c.open), high: Number(c.high), low: Number(c.low), close: Number(c.close),
          }))
          .sort((a, b) => a.time - b.time);
        this.candles.setData(bars);
        this.candle = bars.length ? {...bars[bars.length - 1]} : null;
        this.candleElement.dataset.candles = String(bars.length);
        for (const trade of trades.items.slice().reverse()) this.addTrade(trade, false);
      } catch (error) {
        showMessage(`${this.product}: cannot load history: ${error.message}`, true);
      }
      this.historyLoaded = true;
      for (const trade of this.pending) this.addTrade(trade, true);
      this.pending = [];
    }

    addTrade(trade, live) {
      const id = Number(trade.trade_id);
      if (id <= this.lastTradeId) return;  // already shown (history and stream overlap)
      this.lastTradeId = id;
      const time = epochSeconds(trade.time);
      const price = Number(trade.price);
      const side = String(trade.side).toLowerCase() === 'sell' ? 'sell' : 'buy';
      this.addRow(trade, side);
      if (!Number.isFinite(time) || !Number.isFinite(price)) return;

      // A line series takes one value per second and only moves forward in time.
      const second = Math.floor(time);
      if (second >= this.lastTime[side]) {
        this.series[side].update({time: second, value: price});
        this.lastTime[side] = second;
        this.points += 1;
        if (live) this.livePoints += 1;
        this.priceElement.dataset.points = String(this.points);
        this.priceElement.dataset.livePoints = String(this.livePoints);
      }
      this.updateCandle(second, price);
      $('.last-price', this.root).textContent = String(trade.price);
    }

    updateCandle(second, price) {
      const start = second - (second % CANDLE_SECONDS);
      if (this.candle && start < this.candle.time) return;  // a minute already closed
      if (this.candle && start === this.candle.time) {
        this.candle.high = Math.max(this.candle.high, price);
        this.candle.low = Math.min(this.candle.low, price);
        this.candle.close = price;
      } else {
        this.candle = {time: start, open: price, high: price, low: price, close: price};
        this.candleElement.dataset.candles = String(Number(this.candleElement.dataset.candles) + 1);
      }
      this.candles.update({...this.candle});
    }

    addRow(trade, side) {
      const row = document.createElement('tr');
      row.dataset.side = side;
      cell(row, clockTime(trade.time));
      cell(row, side, 'side');
      cell(row, String(trade.price), 'number');
      cell(row, String(trade.size), 'number');
      this.rows.prepend(row);
      while (this.rows.rows.length > TRADE_ROWS) this.rows.lastElementChild.remove();
    }

    showTicker(ticker) {
      if (ticker.price !== undefined) $('.last-price', this.root).textContent = String(ticker.price);
      if (ticker.best_bid !== undefined && ticker.best_ask !== undefined) {
        $('.quote', this.root).textContent = `bid ${ticker.best_bid} / ask ${ticker.best_ask}`;
      }
    }
  }

  async function refreshMarkets() {
    try {
      const answer = await api('GET', '/v1/markets');
      const items = Array.isArray(answer) ? answer : answer.items;
      for (const item of items) {
        const product = typeof item === 'string' ? item : item.product;
        if (!product || markets.has(product)) continue;
        $('#no-markets').hidden = true;
        const market = new Market(product);
        markets.set(product, market);
        if (item.last_price) $('.last-price', market.root).textContent = String(item.last_price);
      }
    } catch (error) {
      showMessage(`cannot list markets: ${error.message}`, true);
    }
  }

  // ---- account and tasks ----

  function showAccount() {
    const signedIn = Boolean(token);
    $('#login-form').hidden = signedIn;
    $('#signed-in').hidden = !signedIn;
    $('#tasks').hidden = !signedIn;
    $('#user-name').textContent = signedIn ? username : '';
    clearInterval(taskTimer);
    taskTimer = null;
    if (signedIn) {
      refreshTasks();
      taskTimer = setInterval(refreshTasks, TASK_POLL_MS);
    } else {
      $('#task-rows').replaceChildren();
    }
  }

  function signOut(reason) {
    token = null;
    username = null;
    sessionStorage.removeItem('mesh.token');
    sessionStorage.removeItem('mesh.username');
    showAccount();
    if (reason) showMessage(reason, true);
  }

  async function signIn(name, password) {
    const answer = await api('POST', '/v1/auth/login', {username: name, password});
    token = answer.access_token;
    username = name;
    sessionStorage.setItem('mesh.token', token);
    sessionStorage.setItem('mesh.username', username);
    showMessage(`signed in as ${name}`);
    showAccount();
  }

  async function onLogin(event, register) {
    event.preventDefault();
    const form = $('#login-form');
    if (!form.reportValidity()) return;
    const name = form.elements.username.value;
    const password = form.elements.password.value;
    try {
      if (register) await api('POST', '/v1/auth/register', {username: name, password});
      await signIn(name, password);
      form.reset();
    } catch (error) {
      showMessage(`${register ? 'register' : 'sign in'} failed: ${error.message}`, true);
    }
  }

  function resultText(task) {
    if (task.status === 'failed') return String(task.error ?? 'failed');
    if (task.result === null || task.result === undefined) return '';
    const text = JSON.stringify(task.result);
    return text.length > 80 ? text.slice(0, 77) + '...' : text;
  }

  async function refreshTasks() {
    if (!token || taskRefreshRunning) return;
    taskRefreshRunning = true;
    try {
      const answer = await api('GET', '/v1/tasks?limit=20');
      const rows = answer.items.map((task) => {
        const row = document.createElement('tr');
        row.dataset.id = task.id;
        row.dataset.status = task.status;
        cell(row, clockTime(task.created_at));
        cell(row, task.type);
        cell(row, task.status, 'status ' + task.status);
        cell(row, resultText(task), 'result');
        return row;
      });
      $('#task-rows').replaceChildren(...rows);
    } catch (error) {
      if (error.status === 401) signOut('session expired: sign in again');
      else showMessage(`cannot list tasks: ${error.message}`, true);
    } finally {
      taskRefreshRunning = false;
    }
  }

  async function onSubmitTask(event) {
    event.preventDefault();
    const form = $('#task-form');
    const type = form.elements.type.value;
    const value = form.elements.value.value;
    const payload = type === 'primes' ? {below: Number(value)} : value;
    try {
      const answer = await api('POST', '/v1/tasks', {type, payload});
      showMessage(`task ${answer.id} queued`);
      form.elements.value.value = '';
      refreshTasks();
    } catch (error) {
      if (error.status === 401) signOut('session expired: sign in again');
      else showMessage(`task refused: ${error.message}`, true);
    }
  }

  function onTaskTypeChange() {
    const form = $('#task-form');
    const primes = form.elements.type.value === 'primes';
    form.elements.value.placeholder = primes ? 'count primes below (2-100000000)' : 'text to echo';
    form.elements.value.type = primes ? 'number' : 'text';
  }

  $('#login-form').addEventListener('submit', (event) => onLogin(event, false));
  $('#register').addEventListener('click', (event) => onLogin(event, true));
  $('#sign-out').addEventListener('click', () => signOut());
  $('#task-form').addEventListener('submit', onSubmitTask);
  $('#task-form').elements.type.addEventListener('change', onTaskTypeChange);

  showAccount();
  refreshMarkets();
  setInterval(refreshMarkets, MARKETS_POLL_MS);
})();
